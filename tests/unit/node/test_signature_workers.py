"""Signature worker processes (R10, R30; docs/performance.md, node/signature_workers.py):
they report exactly the transactions whose signature is valid, and never change a
result: a tampered transaction is still rejected by `apply_block` with the message the
node gives without workers; workers stopped or killed make the node do the work itself,
and they restart when needed. Their admission verdicts: `test_admission_pipeline.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from marketplace_tx.chain.block import Block
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.state_transition import apply_block
from node.signature_workers import (
    SignatureWorkers,
    valid_signature_hashes,
    verified_hashes,
    worker_answer,
)
from tests.unit.marketplace_tx.execution_fixtures import CHAIN_ID, PARAMS
from tests.unit.node.test_block_budget import built_block


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
