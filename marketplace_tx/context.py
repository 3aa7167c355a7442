"""What a rule may know about the block and transaction it runs in."""

from __future__ import annotations

from dataclasses import dataclass

from marketplace_tx.params import Params


@dataclass(frozen=True)
class BlockContext:
    """The block being executed: everything rules may read besides state."""

    chain_id: str
    """The chain's id."""
    height: int
    """The block's height (block 1 follows genesis)."""
    time: int
    """The block's time in ms since the Unix epoch (R6, R28); rules' only clock."""
    proposer: bytes
    """The block's proposer, who receives its fees (R11, R23)."""
    params: Params
    """The chain's parameters from genesis (§9)."""


@dataclass(frozen=True)
class TxContext:
    """One transaction being executed inside a block."""

    block: BlockContext
    """The enclosing block."""
    tx_hash: bytes
    """The transaction's id (R9); ids of objects it creates equal it."""
    index: int
    """The transaction's position in the block."""
    sender: bytes
    """The transaction's signer."""
