"""Speed pieces with their own contracts (docs/performance.md):

- `build_block(max_transactions=…)`: a proposer's own cap gives a smaller block that
  every node accepts (R23: genesis bounds blocks; the cap is not a rule);
- `node/block_budget.py`: the cap follows the measured build time per transaction;
- `node/signature_workers.py`: worker processes report exactly the transactions whose
  signature is valid, and never change a result (a tampered transaction is still
  rejected by `apply_block` with the message the node gives without workers, R10).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from marketplace_tx.chain.block import Block
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.state import MemoryStateReader
from marketplace_tx.rules.state_transition import apply_block, build_block, genesis_changes
from node.block_budget import MIN_SAMPLE_TRANSACTIONS, MIN_TRANSACTIONS, BlockBudget
from node.signature_workers import (
    SignatureWorkers,
    valid_signature_hashes,
    verified_hashes,
    worker_answer,
)
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


# ----------------------------------------------------------------- signature workers


def tampered(block: Block, index: int) -> Block:
    """`block` with the signature of transaction `index` broken (one byte flipped)."""
    raws = list(block.txs)
    raw = bytearray(raws[index])
    at = raws[index].index(b"\xa3sig\xc4\x40") + 6  # the signature's 64 bytes follow its key
    raw[at] ^= 0x01
    raws[index] = bytes(raw)
    return dataclasses.replace(block, txs=tuple(raws))


def test_worker_function_reports_exactly_the_valid_signatures() -> None:
    _, _, result = built_block(20)
    assert valid_signature_hashes(result.block.encode(), PARAMS.max_block_bytes, PARAMS.max_tx_bytes) == [
        tx.hash for tx in result.transactions
    ]
    broken = tampered(result.block, 7)
    reported = valid_signature_hashes(broken.encode(), PARAMS.max_block_bytes, PARAMS.max_tx_bytes)
    assert len(reported) == 19 and result.transactions[7].hash not in reported
    assert valid_signature_hashes(b"\xc1 not a block", PARAMS.max_block_bytes, PARAMS.max_tx_bytes) == []


def test_a_reported_hash_only_skips_work_it_never_hides_a_bad_signature() -> None:
    base, tip, result = built_block(20)
    broken = tampered(result.block, 7)
    reported = frozenset(valid_signature_hashes(broken.encode(), PARAMS.max_block_bytes, PARAMS.max_tx_bytes))
    with pytest.raises(InvalidBlock) as with_workers:
        apply_block(base, tip, CHAIN_ID, PARAMS, broken, reported.__contains__)
    with pytest.raises(InvalidBlock) as without:
        apply_block(base, tip, CHAIN_ID, PARAMS, broken)
    assert str(with_workers.value) == str(without.value)
    assert "transaction 7: bad_signature" in str(without.value)


def test_real_worker_processes_verify_blocks_and_stop() -> None:
    _, _, result = built_block(300)
    broken = tampered(result.block, 123)

    async def scenario() -> tuple[frozenset[bytes], frozenset[bytes], bool, bool]:
        workers = SignatureWorkers(1)
        try:
            good = await verified_hashes(workers.verify_block(result.block.encode(), PARAMS))
            bad = await verified_hashes(workers.verify_block(broken.encode(), PARAMS))
            running = workers.running
        finally:
            workers.stop()
        return good, bad, running, workers.running

    good, bad, was_running, still_running = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert good == {tx.hash for tx in result.transactions}
    assert bad == good - {result.transactions[123].hash}
    assert was_running and not still_running


def test_no_workers_means_the_node_verifies_everything_itself() -> None:
    async def scenario() -> frozenset[bytes]:
        workers = SignatureWorkers(0)
        future = workers.verify_block(b"anything", PARAMS)
        assert future is None and not workers.running
        return await verified_hashes(future)

    assert asyncio.run(scenario()) == frozenset()


def test_jobs_cancelled_by_a_stop_give_no_hashes_instead_of_an_error() -> None:
    _, _, result = built_block(200)

    async def scenario() -> list[frozenset[bytes]]:
        workers = SignatureWorkers(1)
        futures = [workers.verify_block(result.block.encode(), PARAMS) for _ in range(20)]
        workers.stop()
        return [await verified_hashes(future) for future in futures]

    outcomes = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    full = {tx.hash for tx in result.transactions}
    assert all(outcome in (frozenset(), full) for outcome in outcomes)


def test_a_killed_worker_makes_the_node_fall_back_then_workers_restart() -> None:
    _, _, result = built_block(300)
    raw_block = result.block.encode()

    async def scenario() -> tuple[object, frozenset[bytes]]:
        workers = SignatureWorkers(1)
        try:
            await verified_hashes(workers.verify_block(raw_block, PARAMS))  # the worker is up
            executor = workers._executor
            assert executor is not None
            for process in list(executor._processes.values()):
                process.kill()  # as the kernel's OOM killer would
            crashed = await worker_answer(workers.verify_block(raw_block, PARAMS))
            for _ in range(3):  # the broken pool is replaced on a later job
                again = await verified_hashes(workers.verify_block(raw_block, PARAMS))
                if again:
                    return crashed, again
            return crashed, frozenset()
        finally:
            workers.stop()

    crashed, again = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert crashed in (None, [tx.hash for tx in result.transactions])  # None: the node does the work
    assert again == {tx.hash for tx in result.transactions}
