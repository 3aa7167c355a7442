"""Many transaction signatures verified at once, on every core (speed only).

STYLE.md: where speed needs tricks, they live in a separate, clearly named place.
`valid_signatures(txs)` returns exactly `[tx.has_valid_signature() for tx in txs]`;
for a large batch it spreads the work over a few threads, which run in parallel
because libsodium's verification releases the GIL. Results are the same whatever the
thread count or timing, so the state machine stays deterministic.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from marketplace_tx.chain.transaction import Transaction

PARALLEL_FROM = 128
"""Batches smaller than this are verified in the calling thread."""
CHUNK = 64
"""Signatures one thread verifies per task."""
WORKERS = max(1, min(4, os.cpu_count() or 1))
"""Threads of the pool (one per core, at most 4)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="signatures")
        return _pool


def _verify_chunk(transactions: Sequence[Transaction]) -> list[bool]:
    return [tx.has_valid_signature() for tx in transactions]


def valid_signatures(transactions: Sequence[Transaction]) -> list[bool]:
    """`[tx.has_valid_signature() for tx in transactions]`, in parallel when it pays."""
    if WORKERS == 1 or len(transactions) < PARALLEL_FROM:
        return _verify_chunk(transactions)
    chunks = [transactions[start:start + CHUNK] for start in range(0, len(transactions), CHUNK)]
    return [valid for result in _executor().map(_verify_chunk, chunks) for valid in result]
