"""Consensus among the authorities: votes, commits and validator sets (PROTOCOL §7).

Pure like `marketplace_tx`: no I/O, clocks or randomness. This version holds the
vote and commit rules that a single authority already needs (R24, R26); the full
Tendermint state machine (R25) grows here.
"""
