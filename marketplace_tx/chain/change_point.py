"""A validator-set change point, what a light client walks through (PROTOCOL R37, R38)."""

from __future__ import annotations

from dataclasses import dataclass

from marketplace_tx.chain.block import Commit


@dataclass(frozen=True)
class ChangePoint:
    """A header whose `next_validators_hash` differs from its `validators_hash` (R37), with
    what a light client needs to move its trusted set past it: what a node stores and
    serves at `GET /light/changes`, and what the client checks."""

    height: int
    """The block's height (as the node lists it)."""
    header: bytes
    """The canonical header bytes (R23); their SHA-256 is the block hash."""
    commit: Commit
    """The precommits that finalized that block (by the set before the change)."""
    next_validators: tuple[bytes, ...]
    """The set that signs the next block, sorted and unique: it hashes to the header's
    `next_validators_hash`."""
