"""The pure core of marketchain: encoding, crypto, transactions, blocks and the state machine.

Nothing in this package performs I/O, reads a clock or draws randomness: the same
inputs always give the same bytes, hashes and results (STYLE.md, architecture).
"""
