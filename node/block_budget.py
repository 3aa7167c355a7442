"""Blocks sized by a time budget: how many transactions this node puts in a proposal.

Genesis bounds a block by bytes and by transactions (R23); within those bounds a
proposer that packs everything it has can build a block that takes its peers seconds
to check, past timeoutPropose, and makes every transaction in it wait that long. So the
node measures how long building took per transaction and caps the next proposal at
`[consensus] block_time_budget_ms` worth of transactions. The cap only changes which
valid block this node proposes; every node still accepts any block within genesis limits.
"""

from __future__ import annotations

SMOOTHING = 0.3
"""Weight of the newest measurement in the running estimate (an exponential average)."""
MIN_SAMPLE_TRANSACTIONS = 100
"""Blocks smaller than this are not measured: their fixed costs would dominate."""
MIN_TRANSACTIONS = 100
"""The cap never goes below this, so a slow moment cannot starve the chain."""


class BlockBudget:
    """The running estimate of build time per transaction and the cap it gives."""

    def __init__(self, budget_ms: int) -> None:
        self.budget_seconds = budget_ms / 1000
        """Time the node aims to spend building one block."""
        self.seconds_per_transaction: float | None = None
        """Exponential average of the measured build time per transaction; None until
        a block of at least `MIN_SAMPLE_TRANSACTIONS` was built."""

    def observe(self, transactions: int, seconds: float) -> None:
        """A block of `transactions` took `seconds` (wall clock) to build."""
        if transactions < MIN_SAMPLE_TRANSACTIONS or seconds <= 0:
            return
        measured = seconds / transactions
        previous = self.seconds_per_transaction
        self.seconds_per_transaction = measured if previous is None else previous + SMOOTHING * (measured - previous)

    def transaction_limit(self) -> int | None:
        """Most transactions the next proposal should hold, or None for no cap beyond genesis."""
        if self.seconds_per_transaction is None:
            return None
        return max(MIN_TRANSACTIONS, int(self.budget_seconds / self.seconds_per_transaction))
