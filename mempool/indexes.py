"""The mempool's two heaps: senders' tails by eviction rank, transactions by admission time.

Both are binary heaps with lazy deletion: an entry is never searched for and removed;
it is pushed when something changes and skipped when popped if it no longer describes
the pool (`is_current`). So admission, eviction and expiry cost O(log n) each, not a
pass over every sender (issue 13, attack 5). Stale entries are dropped when popped, and
the whole heap is rebuilt from its current entries when it holds more than twice as
many as the pool (plus `SLACK`), so its size stays proportional to the pool's.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

SLACK = 1024
"""Stale entries a heap may hold beyond twice its live count before it is rebuilt."""

TailEntry = tuple[int, int, int, int, bytes, bytes]
"""(rank, fee rate, −admission time, sequence, sender, tx hash): lowest is evicted first."""
AgeEntry = tuple[int, int, bytes]
"""(admission time, sequence, tx hash): oldest first."""
Entry = TypeVar("Entry")
"""A heap entry: a tuple ordered so the entry to pop first is the lowest."""


class LazyHeap(Generic[Entry]):
    """A binary heap of entries, stale ones skipped when popped and dropped by `compact`."""

    def __init__(self, is_current: Callable[[Entry], bool]) -> None:
        self._heap: list[Entry] = []
        self._sequence = itertools.count()
        self._is_current = is_current

    def __len__(self) -> int:
        return len(self._heap)

    def compact(self, live: int) -> None:
        """Rebuild the heap from its current entries if stale ones outnumber `live` + `SLACK`."""
        if len(self._heap) > 2 * live + SLACK:
            self._heap = [entry for entry in self._heap if self._is_current(entry)]
            heapq.heapify(self._heap)


class TailIndex(LazyHeap[TailEntry]):
    """Every sender's last pending transaction, lowest eviction rank first: future before
    ready, then the lowest fee rate, then the most recently admitted."""

    def add(self, rank: int, rate: int, admitted_ms: int, sender: bytes, tx_hash: bytes) -> None:
        """Index a sender's (new) tail."""
        heapq.heappush(self._heap, (rank, rate, -admitted_ms, next(self._sequence), sender, tx_hash))

    def pop_lowest(self) -> TailEntry | None:
        """Remove and return the lowest current entry (None if there is none)."""
        heap = self._heap
        while heap:
            entry = heapq.heappop(heap)
            if self._is_current(entry):
                return entry
        return None

    def restore(self, entries: list[TailEntry]) -> None:
        """Put back entries popped by `pop_lowest` (the stale ones are dropped later)."""
        for entry in entries:
            heapq.heappush(self._heap, entry)


class AgeIndex(LazyHeap[AgeEntry]):
    """Transactions by admission time, oldest first (for expiry)."""

    def add(self, admitted_ms: int, tx_hash: bytes) -> None:
        """Index a transaction admitted at `admitted_ms`."""
        heapq.heappush(self._heap, (admitted_ms, next(self._sequence), tx_hash))

    def pop_older_than(self, cutoff_ms: int) -> list[bytes]:
        """Remove and return the hashes of current entries admitted before `cutoff_ms`, oldest first."""
        heap, popped = self._heap, []
        while heap and heap[0][0] < cutoff_ms:
            entry = heapq.heappop(heap)
            if self._is_current(entry):
                popped.append(entry[2])
        return popped
