"""Peer-to-peer transport (PROTOCOL §8): framing, authenticated encryption, gossip.

Knows message kinds, not their meaning (STYLE.md). Multi-authority networking lands
with the BFT consensus; a single-authority chain has no peers.
"""
