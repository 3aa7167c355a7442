"""The admission pipeline (PROTOCOL R10, R12, R32; node/admission.py).

- The three verdict strategies (in this thread, a thread pool, worker processes, and
  the workers' fallback when there are none) give identical verdicts on the same bytes:
  valid, bad signature, bad schema, unknown type, fee too low, wrong chain, oversize,
  garbage; in the same order, with the R12 codes and messages of `admission_verdict`.
- A batch is answered, transaction by transaction and in order, exactly as the same
  transactions submitted one at a time, whichever strategy computed the verdicts; the
  metrics count each outcome and each verified signature.
- Gossip: admitted transactions that are ready go to peers in one `txs` message; a peer's
  batch is admitted in order, what was admitted is relayed, consensus is woken, and a peer
  that sends a malformed message or transactions no honest node relays is penalized
  (more: tests/unit/node/test_tx_gossip.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.admission import Verdict, admission_verdicts
from node.admission import (
    PROCESS_FROM,
    AdmissionPipeline,
    InThreadVerdicts,
    ThreadPoolVerdicts,
    WorkerProcessVerdicts,
)
from node.signature_workers import SignatureWorkers
from tests.unit.mempool.test_mempool import (
    ALICE,
    BOB,
    CAROL,
    CHAIN_ID,
    PARAMS,
    Ledger,
    make_pool,
    transfer,
)
from tests.unit.mempool.test_mempool_admission_order import forged, signed

TO_BOB = {"to": BOB.address, "amount": 1}
INPUTS: dict[str, tuple[bytes, str | None]] = {
    # name: (bytes, expected code of the verdict; "bad_signature" is reported, not raised)
    "valid": (transfer(ALICE, 0).raw, None),
    "valid_other_sender": (transfer(BOB, 3).raw, None),
    "bad_signature": (forged(transfer(ALICE, 1)), "bad_signature"),
    "bad_schema": (signed({**TO_BOB, "amount": 0}), "invalid_field"),
    "unknown_type": (signed({}, tx_type="teleport"), "unknown_type"),
    "fee_too_low": (transfer(ALICE, 2, fee=PARAMS.min_fee - 1).raw, "fee_too_low"),
    "wrong_chain": (signed(TO_BOB, "other-chain"), "wrong_chain"),
    "oversize": (b"\x00" * (PARAMS.max_tx_bytes + 1), "tx_too_large"),
    "garbage": (b"\x93garbage", "malformed"),
    "not_msgpack": (b"\xc1", "malformed"),
}
RAWS = [raw for raw, _ in INPUTS.values()] * 3  # several chunks of every strategy


def code_of(verdict: Verdict) -> str | None:
    if verdict.error_code:
        return verdict.error_code
    return None if verdict.signature_valid else "bad_signature"


async def all_strategies(raws: Sequence[bytes]) -> dict[str, list[Verdict]]:
    """The verdicts on `raws` by every strategy (worker processes really started)."""
    in_thread = InThreadVerdicts(CHAIN_ID, PARAMS)
    workers, no_workers = SignatureWorkers(1), SignatureWorkers(0)
    with ThreadPoolExecutor(2) as executor:
        pool = ThreadPoolVerdicts(in_thread, executor, chunk=4)
        try:
            results = {
                "in_thread": await in_thread.verdicts(raws),
                "thread_pool": await pool.verdicts(raws),
                "worker_processes": await WorkerProcessVerdicts(CHAIN_ID, PARAMS, workers, pool, chunk=7).verdicts(raws),
                "no_workers_fallback": await WorkerProcessVerdicts(CHAIN_ID, PARAMS, no_workers, pool).verdicts(raws),
            }
            assert workers.jobs_done == -(-len(raws) // 7)  # every chunk really went to a worker
            return results
        finally:
            workers.stop()


def test_every_strategy_gives_the_verdicts_of_the_plain_function() -> None:
    expected = admission_verdicts(RAWS, CHAIN_ID, PARAMS)
    assert [code_of(verdict) for verdict in expected[:len(INPUTS)]] == [code for _, code in INPUTS.values()]
    assert all(verdict.signature_verified == (verdict.transaction is not None) for verdict in expected)
    results = asyncio.run(asyncio.wait_for(all_strategies(RAWS), timeout=120))
    for name, verdicts in results.items():
        assert verdicts == expected, name


def test_a_known_signature_is_not_verified_again_by_the_in_thread_strategies() -> None:
    valid, bad = INPUTS["valid"][0], INPUTS["bad_signature"][0]
    known = {verdict.transaction.hash for verdict in admission_verdicts([valid, bad], CHAIN_ID, PARAMS)}
    strategy = InThreadVerdicts(CHAIN_ID, PARAMS, known.__contains__)
    first, second = strategy.check([valid, bad])
    assert first.signature_valid and not first.signature_verified
    assert second.signature_valid and not second.signature_verified  # "known" is trusted: only ever pass verified hashes


# ----------------------------------------------------------------- the pipeline


class FakeCounter:
    """A Prometheus counter family that records increments per label."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._label = ""

    def labels(self, label: str) -> FakeCounter:
        self._label = label
        return self

    def inc(self, amount: int = 1) -> None:
        self.counts[self._label] += amount


class FakeMetrics:
    def __init__(self) -> None:
        self.signature_checks, self.admitted, self.rejected = FakeCounter(), FakeCounter(), FakeCounter()


class Harness:
    """A pipeline on a real mempool, with its peers, consensus and metrics recorded."""

    def __init__(self, workers: int = 0) -> None:
        self.ledger = Ledger()
        self.mempool = make_pool(self.ledger)
        self.metrics = FakeMetrics()
        self.sent: list[tuple[str, Any]] = []
        self.penalties: list[tuple[bytes, float, str]] = []
        self.woken = 0
        self.workers = SignatureWorkers(workers)
        self.pipeline = AdmissionPipeline(
            self.mempool, self.workers, self.metrics, lambda: 1_000,
            lambda kind, body: self.sent.append((kind, body)),
            lambda peer, penalty, reason: self.penalties.append((peer, penalty, reason)),
            self.wake,
        )

    def wake(self) -> None:
        self.woken += 1

    def close(self) -> None:
        self.pipeline.close()
        self.workers.stop()


def answer(outcome: Any) -> tuple:
    if isinstance(outcome, AdmissionError):
        return ("error", outcome.code, outcome.message)
    return ("ok", outcome.hash)


def mixed_batch(count: int) -> list[bytes]:
    """Valid transfers of three senders with every kind of failure in between, some
    duplicates and a nonce gap."""
    nonces = {key.address: 0 for key in (ALICE, BOB, CAROL)}
    batch = []
    for position in range(count):
        if position % 9 == 4:
            batch.append(list(INPUTS.values())[position % len(INPUTS)][0])
            continue
        if position % 13 == 6:
            batch.append(batch[-1])  # the same bytes again: a duplicate
            continue
        sender = (ALICE, BOB, CAROL)[position % 3]
        batch.append(transfer(sender, nonces[sender.address]).raw)
        nonces[sender.address] += 1 + (position == 20)  # one gap: later nonces wait, still admitted
    return batch


async def one_at_a_time(raws: Sequence[bytes]) -> list[tuple]:
    harness = Harness()
    try:
        outcomes = []
        for raw in raws:
            try:
                outcomes.append(answer(harness.pipeline.submit(raw)))
            except AdmissionError as error:
                outcomes.append(answer(error))
        return outcomes
    finally:
        harness.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_batch_is_answered_like_its_transactions_one_at_a_time(workers: int) -> None:
    raws = mixed_batch(PROCESS_FROM + 20)  # large enough for the worker processes

    async def scenario() -> tuple[list[tuple], list[tuple], Harness]:
        harness = Harness(workers)
        try:
            batch = [answer(outcome) for outcome in await harness.pipeline.submit_many(raws)]
            await asyncio.sleep(0.05)  # the gossip delay
        finally:
            harness.close()
        return batch, await one_at_a_time(raws), harness

    batch, alone, harness = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert batch == alone
    codes = Counter(outcome[1] if outcome[0] == "error" else "admitted" for outcome in batch)
    assert {"duplicate", "bad_signature", "malformed", "wrong_chain"} <= set(codes)
    assert harness.workers.jobs_done == (1 if workers else 0)
    assert harness.metrics.admitted.counts == Counter({"http": codes["admitted"]})
    assert harness.metrics.rejected.counts == Counter({code: count for code, count in codes.items() if code != "admitted"})
    decodable = sum(1 for verdict in admission_verdicts(raws, CHAIN_ID, PARAMS) if verdict.transaction is not None)
    assert harness.metrics.signature_checks.counts == Counter({"tx_admission": decodable})  # none was known before
    admitted = [outcome[1] for outcome in batch if outcome[0] == "ok"]
    relayed = [tx_hash for tx_hash in admitted if harness.mempool.is_ready(tx_hash)]  # not the nonces after the gap
    assert len(relayed) < len(admitted)
    assert [(kind, [hash_of(raw) for raw in body]) for kind, body in harness.sent] == [("txs", relayed)]
    assert harness.woken == 1


def hash_of(raw: bytes) -> bytes:
    return admission_verdicts([raw], CHAIN_ID, PARAMS)[0].transaction.hash


def test_gossiped_batches_are_admitted_relayed_and_bad_peers_penalized() -> None:
    peer = b"\x07" * 32
    good = [transfer(ALICE, 0).raw, transfer(BOB, 0).raw]

    async def scenario() -> Harness:
        harness = Harness()
        try:
            harness.pipeline.receive(peer, "not a list")
            harness.pipeline.receive(peer, [good[0], 5])
            harness.pipeline.receive(peer, [*good, forged(transfer(CAROL, 0)), INPUTS["garbage"][0], good[0]])
            for _ in range(100):
                await asyncio.sleep(0.01)
                if harness.sent:
                    break
        finally:
            harness.close()
        return harness

    harness = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert harness.penalties == [
        (peer, 20.0, "txs body malformed"),
        (peer, 20.0, "txs body malformed"),
        (peer, 5.0, "gossiped tx: malformed"),  # cheap checks first, charged before signatures are checked
        (peer, 10.0, "gossiped tx: bad_signature"),  # the duplicate costs nothing: honest peers send them
    ]
    assert harness.sent == [("txs", good)] and harness.woken == 1
    assert harness.metrics.admitted.counts == Counter({"p2p": 2})
    assert len(harness.mempool) == 2


def test_a_lone_submission_raises_the_code_of_its_rejection() -> None:
    async def scenario() -> list[str]:
        harness = Harness()
        codes = []
        try:
            for raw in (INPUTS["garbage"][0], INPUTS["bad_signature"][0], codec.encode([1])):
                with pytest.raises(AdmissionError) as raised:
                    harness.pipeline.submit(raw)
                codes.append(raised.value.code)
            assert harness.pipeline.submit(INPUTS["valid"][0]).raw == INPUTS["valid"][0]
        finally:
            harness.close()
        return codes

    assert asyncio.run(scenario()) == ["malformed", "bad_signature", "malformed"]
