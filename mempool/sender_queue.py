"""One sender's pending transactions: nonce order, the ready run and the future ones (R10, R11).

A sender's transactions are *ready* from its committed next nonce up to the first
missing nonce (`ready_end`): a block can include them in that order (R11). Those above
a gap are *future*: no block can include them until the gap fills, so they pay no fee
while they wait. The mempool limits, evicts, expires and relays the two kinds apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marketplace_tx.chain.transaction import Transaction

FUTURE = 0
"""Rank of a future transaction: evicted before any ready one."""
READY = 1
"""Rank of a ready transaction."""


def fee_rate(tx: Transaction) -> int:
    """Fee per 1,000 bytes: what eviction and block filling compare."""
    return tx.fee * 1000 // len(tx.raw)


@dataclass(eq=False)
class SenderQueue:
    """One sender's pending transactions by nonce, with its ready run."""

    arrival: int
    """Arrival sequence of the queue (its first pending transaction): breaks ties between
    equal fee rates, in blocks and in the journal."""
    next_nonce: int
    """The sender's committed next nonce, as of the last admission or re-check."""
    by_nonce: dict[int, Transaction] = field(default_factory=dict)
    """The pending transactions by nonce."""
    fees: int = 0
    """Sum of the fees of `by_nonce` (kept up to date, so admission need not add them up)."""
    ready_end: int = -1
    """The first nonce at or above `next_nonce` that is not pending: `[next_nonce,
    ready_end)` is the ready run."""
    top: int = -1
    """The highest pending nonce (the tail: the only transaction eviction may take)."""
    indexed: tuple[bytes, int] | None = None
    """The (hash, rank) of the tail last put in the eviction index, so it is put there
    only when it changes."""

    def __post_init__(self) -> None:
        if self.ready_end < self.next_nonce:
            self.ready_end = self.next_nonce

    @property
    def ready_count(self) -> int:
        """How many of the pending transactions are ready."""
        return self.ready_end - self.next_nonce

    @property
    def future_count(self) -> int:
        """How many of the pending transactions are future (above a gap)."""
        return len(self.by_nonce) - self.ready_count

    def rank_of(self, nonce: int) -> int:
        """`READY` or `FUTURE` for a pending nonce."""
        return READY if nonce < self.ready_end else FUTURE

    def newcomer_rank(self, nonce: int) -> int:
        """`READY` or `FUTURE` for a nonce not yet pending (at or above `next_nonce`)."""
        return READY if nonce == self.ready_end else FUTURE

    def tail(self) -> Transaction:
        """The last pending transaction (highest nonce)."""
        return self.by_nonce[self.top]

    def add(self, tx: Transaction) -> list[Transaction]:
        """Add `tx`; return the future transactions it made ready (filling a gap)."""
        self.by_nonce[tx.nonce] = tx
        self.fees += tx.fee
        self.top = max(self.top, tx.nonce)
        if tx.nonce != self.ready_end:
            return []
        promoted = []
        nonce = tx.nonce + 1
        while nonce in self.by_nonce:
            promoted.append(self.by_nonce[nonce])
            nonce += 1
        self.ready_end = nonce
        return promoted

    def discard(self, tx: Transaction) -> None:
        """Remove `tx` (present); the transactions above it become future if it was ready."""
        del self.by_nonce[tx.nonce]
        self.fees -= tx.fee
        if self.next_nonce <= tx.nonce < self.ready_end:
            self.ready_end = tx.nonce
        if tx.nonce == self.top:
            self.top = max(self.by_nonce, default=-1)

    def rebase(self, next_nonce: int) -> None:
        """The sender's committed next nonce is now `next_nonce` (its stale nonces are gone)."""
        self.next_nonce = next_nonce
        nonce = next_nonce
        while nonce in self.by_nonce:
            nonce += 1
        self.ready_end = nonce

    def future(self) -> list[Transaction]:
        """The future transactions, in nonce order."""
        return [self.by_nonce[nonce] for nonce in sorted(self.by_nonce) if nonce > self.ready_end]

    def nonces_from_top(self) -> list[int]:
        """The pending nonces, highest first (the order eviction takes them)."""
        return sorted(self.by_nonce, reverse=True)
