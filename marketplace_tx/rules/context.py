"""What a rule may know about the block and transaction it runs in."""

from __future__ import annotations

from dataclasses import dataclass

from marketplace_tx.chain.params import Params


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


@dataclass(frozen=True)
class Origin:
    """What caused a change recorded in a history (R18): a transaction or a deadline."""

    time: int
    """Block time of the change."""
    height: int
    """Height of the block that made it."""
    tx_hash: bytes | None
    """The transaction that made it, or None when a deadline fired (R15)."""

    @classmethod
    def of_tx(cls, context: TxContext) -> Origin:
        """The origin of a change made by a transaction."""
        return cls(context.block.time, context.block.height, context.tx_hash)

    @classmethod
    def of_deadline(cls, block: BlockContext) -> Origin:
        """The origin of a change made by a deadline at the start of a block."""
        return cls(block.time, block.height, None)

    def to_map(self) -> dict[str, object]:
        """`{height, time, tx}` with `tx` the hash or the text `deadline` (R18)."""
        return {"height": self.height, "time": self.time, "tx": self.tx_hash if self.tx_hash else "deadline"}
