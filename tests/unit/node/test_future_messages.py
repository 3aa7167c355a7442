"""Verified messages of later heights (node/future_messages.py): byte budgets per peer
and in total, released when their height starts."""

from __future__ import annotations

from node.future_messages import (
    ENTRY_OVERHEAD_BYTES,
    FUTURE_SLACK_BYTES,
    FutureBudget,
    FutureMessages,
)

PEER_A, PEER_B, PEER_C = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


async def _noop() -> None:
    return None


def test_the_default_budget_holds_one_largest_block_per_peer() -> None:
    budget = FutureBudget.for_blocks(4 * 1024 * 1024)
    assert budget.per_peer_bytes == 4 * 1024 * 1024 + FUTURE_SLACK_BYTES
    assert budget.total_bytes == 2 * budget.per_peer_bytes


def test_budgets_per_peer_and_in_total_and_release_at_the_height() -> None:
    entry = 100 + ENTRY_OVERHEAD_BYTES
    kept = FutureMessages(FutureBudget(per_peer_bytes=2 * entry, total_bytes=3 * entry))
    first, second = (lambda: _noop()), (lambda: _noop())
    assert kept.keep(7, PEER_A, 100, first)
    assert kept.keep(8, PEER_A, 100, second)
    assert not kept.keep(7, PEER_A, 100, first), "peer A's budget is full"
    assert kept.keep(7, PEER_B, 100, second)
    assert not kept.keep(7, PEER_C, 100, first), "the total budget is full"
    assert kept.total_bytes == 3 * entry and kept.peer_bytes(PEER_A) == 2 * entry
    assert kept.take(7) == [first, second]
    assert kept.total_bytes == entry and kept.peer_bytes(PEER_B) == 0
    assert kept.take(9) == [] and len(kept) == 0 and kept.total_bytes == 0, "lower heights are dropped"
    assert kept.peer_bytes(PEER_A) == 0
