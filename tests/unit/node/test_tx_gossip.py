"""Gossiped transactions are paid for (issue 13; PROTOCOL R32; node/tx_gossip.py, node/admission.py).

- The queue of received `txs` messages is bounded in bytes per peer and in total; a
  message beyond is dropped and costs its peer a little score.
- Cheap checks (size, known hash, decoding, chain, fee, nonce window, funds, limits) run
  before the signature: refused transactions cost no signature check.
- Every refusal costs the peer score by the work it caused: a bad signature much more
  than a low fee, a stale nonce almost nothing, a duplicate or a full mempool nothing.
- Future transactions are relayed only once their nonce gap fills.
- A large batch is admitted in chunks, the event loop running in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.accounts import Account
from node.admission import ADMIT_CHUNK, PROCESS_CHUNK, RECEIVED_BYTES_PER_PEER
from node.tx_gossip import DROPPED_MESSAGE_PENALTY, GOSSIP_PENALTIES, ReceivedQueue, message_bytes
from tests.unit.mempool.test_mempool import ALICE, BOB, CAROL, PARAMS, transfer
from tests.unit.mempool.test_mempool_admission_order import forged
from tests.unit.node.test_admission_pipeline import Harness, hash_of

PEER, OTHER = b"\x07" * 32, b"\x08" * 32


def run(scenario: Callable[[Harness], Awaitable[Any]], workers: int = 0) -> Harness:
    async def main() -> Harness:
        harness = Harness(workers)
        try:
            await scenario(harness)
        finally:
            harness.close()
        return harness

    return asyncio.run(asyncio.wait_for(main(), timeout=120))


async def settled(harness: Harness) -> None:
    """Wait until every queued gossip message is admitted."""
    for _ in range(2_000):
        await asyncio.sleep(0.01)
        if not len(harness.pipeline.received) and harness.pipeline.received.queued_bytes == 0:
            return
    raise AssertionError("gossip never settled")


def test_the_received_queue_is_bounded_per_peer_and_in_total() -> None:
    queue = ReceivedQueue(per_peer_bytes=1_000, total_bytes=1_500)
    message = [b"x" * 300]  # 364 bytes with its overhead
    assert queue.put(PEER, message) and queue.put(PEER, message)
    assert not queue.put(PEER, message)  # 3 × 364 > 1,000
    assert queue.put(OTHER, message) and not queue.put(OTHER, [b"y" * 600])  # total
    assert queue.queued_bytes == 3 * message_bytes(message) <= 1_500
    peer, body, size = queue.take()
    queue.done(peer, size)
    assert queue.put(PEER, message) and queue.bytes_of(PEER) == 2 * size
    lone = ReceivedQueue(per_peer_bytes=10, total_bytes=10)
    assert lone.put(PEER, [b"z" * 100])  # one message always fits an empty queue


def test_a_flooding_peer_is_dropped_beyond_its_byte_budget_and_pays() -> None:
    junk = [bytes([0xC1]) * 200] * 10_000  # ~2.6 MB of undecodable bytes per message
    messages = RECEIVED_BYTES_PER_PEER // message_bytes(junk) + 3

    async def scenario(harness: Harness) -> None:
        for _ in range(messages):
            harness.pipeline.receive(PEER, junk)
            assert harness.pipeline.received.bytes_of(PEER) <= RECEIVED_BYTES_PER_PEER
        harness.pipeline.receive(OTHER, [transfer(ALICE, 0).raw])  # another peer still gets in
        await settled(harness)

    harness = run(scenario)
    dropped = [entry for entry in harness.penalties if entry[2].startswith("txs message dropped")]
    assert len(dropped) >= 2 and all(entry[:2] == (PEER, DROPPED_MESSAGE_PENALTY) for entry in dropped)
    assert len(harness.mempool) == 1


def test_cheap_refusals_cost_no_signature_check_and_each_code_its_price() -> None:
    known = transfer(ALICE, 0)
    batch = [
        forged(transfer(CAROL, 1)),  # passes the cheap checks: its signature is checked (bad)
        known.raw,  # admitted
        known.raw,  # duplicate in the same message: no second signature check
        forged(transfer(BOB, 500)),  # nonce too far: bad_nonce, before the signature
        forged(transfer(CAROL, 0, fee=PARAMS.min_fee - 1)),  # fee_too_low
        forged(transfer(BOB, 0, fee=2_000_000)),  # insufficient_funds, before the signature
    ]

    async def scenario(harness: Harness) -> None:
        harness.pipeline.receive(PEER, batch)
        await settled(harness)

    harness = run(scenario)
    assert harness.metrics.signature_checks.counts["tx_admission"] == 2  # the forged CAROL 1 and the good one
    charged = {reason.split(": ")[1].split(" ")[0]: penalty for _, penalty, reason in harness.penalties}
    assert charged == {
        "bad_nonce": GOSSIP_PENALTIES["bad_nonce"],
        "fee_too_low": GOSSIP_PENALTIES["fee_too_low"],
        "insufficient_funds": GOSSIP_PENALTIES["insufficient_funds"],
        "bad_signature": GOSSIP_PENALTIES["bad_signature"],
    }
    assert (GOSSIP_PENALTIES["bad_signature"] > 5 * GOSSIP_PENALTIES["fee_too_low"]
            > 5 * GOSSIP_PENALTIES["bad_nonce"] > 0 == GOSSIP_PENALTIES["duplicate"] == GOSSIP_PENALTIES["mempool_full"])
    assert harness.metrics.rejected.counts["duplicate"] == 1 and len(harness.mempool) == 1


def test_many_refusals_in_one_message_are_charged_together() -> None:
    stale = [forged(transfer(BOB, 100 + nonce)) for nonce in range(50)]

    async def scenario(harness: Harness) -> None:
        harness.pipeline.receive(PEER, stale)
        await settled(harness)

    harness = run(scenario)
    assert harness.penalties == [(PEER, GOSSIP_PENALTIES["bad_nonce"] * 50, "gossiped tx: bad_nonce x50")]
    assert harness.metrics.signature_checks.counts["tx_admission"] == 0


def test_future_transactions_are_relayed_only_once_their_gap_fills() -> None:
    first, second, third = (transfer(ALICE, nonce) for nonce in range(3))

    async def scenario(harness: Harness) -> None:
        harness.pipeline.receive(PEER, [third.raw, second.raw])
        await settled(harness)
        await asyncio.sleep(0.05)  # the gossip delay
        assert harness.sent == [] and len(harness.mempool) == 2
        harness.pipeline.receive(PEER, [first.raw])
        await settled(harness)

    harness = run(scenario)
    assert [(kind, [hash_of(raw) for raw in body]) for kind, body in harness.sent] == [
        ("txs", [first.hash, second.hash, third.hash])
    ]


def test_a_large_batch_is_admitted_in_chunks_with_the_event_loop_running_between() -> None:
    senders = [KeyPair.from_seed(bytes([40 + index]) * 32) for index in range(15)]
    raws = [transfer(senders[index % 15], index // 15).raw for index in range(3 * ADMIT_CHUNK // 2)]
    seen_ticks: list[int] = []

    async def scenario(harness: Harness) -> None:
        for key in senders:
            harness.ledger.accounts[key.address] = Account(balance=10**9)
        ticks = 0
        admit = harness.mempool.admit

        def counting_admit(verdict: Any, now_ms: int = 0) -> Any:
            seen_ticks.append(ticks)
            return admit(verdict, now_ms)

        harness.mempool.admit = counting_admit  # type: ignore[method-assign]
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(ticker())
        await harness.pipeline.submit_many(raws)
        done = True
        await task

    harness = run(scenario)
    assert len(harness.mempool) == len(raws)
    assert len(seen_ticks) == len(raws) and seen_ticks[0] < seen_ticks[-1]  # the loop ran between chunks


def test_stale_state_refusals_cost_nothing_while_this_node_is_syncing() -> None:
    stale = [forged(transfer(BOB, 100)), forged(transfer(CAROL, 0, fee=2_000_000)),
             forged(transfer(ALICE, 0, fee=PARAMS.min_fee - 1))]

    async def scenario(harness: Harness) -> None:
        harness.pipeline.is_syncing = lambda: True
        harness.pipeline.receive(PEER, stale)
        await settled(harness)

    harness = run(scenario)
    assert harness.penalties == [(PEER, GOSSIP_PENALTIES["fee_too_low"], "gossiped tx: fee_too_low")]


def test_a_message_cannot_buy_signature_checks_beyond_the_per_sender_limits() -> None:
    future = [forged(transfer(ALICE, nonce)) for nonce in range(1, 41)]  # all future: 16 may be admitted
    unpayable = [forged(transfer(BOB, nonce, fee=400_000)) for nonce in range(5)]  # balance 1,000,000: 2 payable
    in_order = [transfer(CAROL, nonce).raw for nonce in range(30)]  # honest order: all ready

    async def scenario(harness: Harness) -> None:
        harness.pipeline.receive(PEER, [*future, *unpayable, *in_order])
        await settled(harness)

    harness = run(scenario)
    assert harness.metrics.signature_checks.counts["tx_admission"] == 16 + 2 + 30
    assert harness.metrics.rejected.counts["mempool_full"] == 40 - 16
    assert harness.metrics.rejected.counts["insufficient_funds"] == 3
    assert len(harness.mempool) == 30  # the forged ones fail their signature check


def test_a_message_that_costs_a_whole_score_is_abandoned_with_the_peers_queued_ones() -> None:
    garbage = [bytes([0xC1]) + index.to_bytes(4, "big") for index in range(2 * ADMIT_CHUNK)]  # 5 each

    async def scenario(harness: Harness) -> None:
        harness.pipeline.receive(PEER, garbage)
        harness.pipeline.receive(PEER, [transfer(ALICE, 0).raw])  # queued behind: dropped unchecked
        harness.pipeline.receive(OTHER, [transfer(BOB, 0).raw])
        await settled(harness)

    harness = run(scenario)
    assert harness.metrics.rejected.counts["malformed"] == ADMIT_CHUNK  # the second chunk was never read
    assert [tx.sender for tx, _ in harness.mempool.pending()] == [BOB.address]
    assert not harness.pipeline._abandoned  # forgotten once its queue is empty


def test_forged_signatures_stop_being_checked_once_they_cost_a_whole_score() -> None:
    keys = [KeyPair.from_seed(bytes([80 + index]) * 32) for index in range(10)]
    forgeries = [forged(transfer(key, nonce)) for nonce in range(60) for key in keys]  # pass every cheap check

    async def scenario(harness: Harness) -> None:
        for key in keys:
            harness.ledger.accounts[key.address] = Account(balance=10**9)
        harness.pipeline.receive(PEER, forgeries)
        await settled(harness)

    harness = run(scenario)
    assert harness.metrics.signature_checks.counts["tx_admission"] == PROCESS_CHUNK  # not 600
    assert sum(penalty for _, penalty, _ in harness.penalties) >= 100


def test_a_message_arriving_after_close_is_ignored_not_an_error(caplog: Any) -> None:
    """The node closes admission before its peers (node.stop): a `txs` message that still
    arrives must not start a task on the stopped threads ('cannot schedule new futures
    after shutdown', which the fault matrix's clean-log check caught)."""
    async def scenario(harness: Harness) -> None:
        harness.pipeline.close()
        harness.pipeline.receive(PEER, [transfer(ALICE, 0).raw])
        for _ in range(20):
            await asyncio.sleep(0.01)

    with caplog.at_level("ERROR"):
        harness = run(scenario)
    assert "admitting gossiped transactions failed" not in caplog.text
    assert len(harness.mempool) == 0 and harness.pipeline.received.queued_bytes == 0
