"""A proposer's block budget (docs/performance.md):

- `build_block(max_transactions=…)`: a proposer's own cap gives a smaller block that
  every node accepts (R23: genesis bounds blocks; the cap is not a rule);
- `node/block_budget.py`: the cap follows the measured build time per transaction.
Signature worker processes: `test_signature_workers.py`.
"""

from __future__ import annotations

import dataclasses

import pytest

from marketplace_tx.rules.state import MemoryStateReader
from marketplace_tx.rules.state_transition import apply_block, build_block, genesis_changes
from node.block_budget import MIN_SAMPLE_TRANSACTIONS, MIN_TRANSACTIONS, BlockBudget
from tests.unit.marketplace_tx.execution_fixtures import (
    ALICE,
    BLOCK_TIME,
    BOB,
    CHAIN_ID,
    PARAMS,
    VALIDATOR,
    make_genesis,
    transfer,
)


def transfers(count: int) -> list:
    return [transfer(ALICE, BOB, 1 + index, nonce=index) for index in range(count)]


def built_block(count: int, max_transactions: int | None = None):
    genesis = make_genesis()
    tip, changes = genesis_changes(genesis)
    base = MemoryStateReader(changes)
    result = build_block(
        base, tip, CHAIN_ID, PARAMS, VALIDATOR.address, BLOCK_TIME, transfers(count), None, (), max_transactions
    )
    return base, tip, result


# ----------------------------------------------------------------- the proposer's cap


def test_the_cap_stops_the_block_and_the_smaller_block_is_valid_everywhere() -> None:
    base, tip, capped = built_block(30, max_transactions=12)
    assert len(capped.transactions) == 12
    assert [tx.nonce for tx in capped.transactions] == list(range(12))
    replayed = apply_block(base, tip, CHAIN_ID, PARAMS, capped.block)
    assert replayed.block.hash == capped.block.hash and replayed.changes == capped.changes


@pytest.mark.parametrize(("cap", "expected"), [(None, 30), (0, 0), (29, 29), (10**9, 30)])
def test_the_cap_never_exceeds_the_genesis_limit_nor_goes_negative(cap: int | None, expected: int) -> None:
    _, _, result = built_block(30, max_transactions=cap)
    assert len(result.transactions) == expected


def test_max_block_txs_still_binds_below_a_larger_cap() -> None:
    genesis_params = dataclasses.replace(PARAMS, max_block_txs=5)
    genesis = dataclasses.replace(make_genesis(), params=genesis_params)
    tip, changes = genesis_changes(genesis)
    result = build_block(
        MemoryStateReader(changes), tip, CHAIN_ID, genesis_params, VALIDATOR.address, BLOCK_TIME,
        transfers(9), None, (), 1_000,
    )
    assert len(result.transactions) == 5


# ----------------------------------------------------------------- the time budget


def test_no_cap_until_a_block_large_enough_was_measured() -> None:
    budget = BlockBudget(500)
    assert budget.transaction_limit() is None
    budget.observe(MIN_SAMPLE_TRANSACTIONS - 1, 5.0)  # small blocks: fixed costs dominate
    budget.observe(1_000, 0.0)
    assert budget.transaction_limit() is None


def test_the_cap_is_the_budget_over_the_time_per_transaction() -> None:
    budget = BlockBudget(500)
    budget.observe(1_000, 0.1)  # 100 µs per transaction
    assert budget.transaction_limit() == 5_000
    budget.observe(1_000, 0.1)
    assert budget.transaction_limit() == 5_000


def test_the_estimate_follows_a_slower_machine_gradually_and_has_a_floor() -> None:
    budget = BlockBudget(500)
    budget.observe(1_000, 0.1)
    budget.observe(1_000, 1.0)  # 1 ms per transaction now
    first = budget.transaction_limit()
    assert first is not None and 500 < first < 5_000
    for _ in range(40):
        budget.observe(1_000, 1.0)
    assert budget.transaction_limit() == 500
    for _ in range(40):
        budget.observe(1_000, 100.0)  # pathologically slow: the floor keeps the chain moving
    assert budget.transaction_limit() == MIN_TRANSACTIONS
