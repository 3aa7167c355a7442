"""Primitives that every layer may use, p2p included: canonical encoding, hashes and signatures, Merkle trees, error codes."""
