"""Peers' proposals, votes and evidence against a real driver over a real LevelDB chain
(node/consensus_intake.py, node/evidence_intake.py, node/future_messages.py,
node/driver_queue.py): what is kept, what is dropped, and what the sender pays (R25–R27, R32).

The chain of tests/unit/node/chain_store_model.py has one validator and head 5; the
driver is a follower deciding height 6, its task not started (queued jobs stay queued).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from consensus.proposal import NO_POL_ROUND, Proposal
from consensus.vote import Vote
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.evidence import make_evidence
from node.consensus_driver import ConsensusDriver
from node.consensus_messages import proposal_body, vote_body
from node.driver_queue import CURRENT, DRIVER_QUEUE_MESSAGES
from node.future_messages import CATCH_UP_HEIGHTS_AHEAD, ENTRY_OVERHEAD_BYTES, FutureBudget
from node.http.metrics import NodeMetrics
from node.inbound_costs import (
    BAD_SIGNATURE_COST,
    BEYOND_WINDOW_COST,
    EVIDENCE_CHECK_COST,
    INVALID_BLOCK_COST,
    MALFORMED_COST,
    NOT_A_VALIDATOR_COST,
    UNPROVEN_HEIGHT_COST,
)
from node.storage import ChainStore
from tests.unit.node.chain_store_model import CHAIN_ID, VALIDATOR, build_chain, key, make_genesis

ATTACKER = b"\xa7" * 32
"""The node address of the peer sending junk."""
HONEST = b"\x0b" * 32
"""The node address of a peer relaying honest messages."""
OUTSIDER = key("outsider")
"""A key that is not a validator."""
BLOCK_HASH = b"\xbb" * 32


class RecordingPeers:
    """`PeerActions` that remember what was done, with a score like p2p's (100, banned below 0)."""

    def __init__(self) -> None:
        self.penalties: list[tuple[bytes, float, str]] = []
        self.syncs: list[tuple[bytes, int]] = []
        self.relayed: list[tuple[bytes, str]] = []

    def penalize(self, peer: bytes, penalty: float, reason: str) -> None:
        self.penalties.append((peer, penalty, reason))

    def relay(self, peer: bytes, kind: str, body: Any) -> None:
        self.relayed.append((peer, kind))

    def maybe_sync(self, peer: bytes, height: int) -> None:
        self.syncs.append((peer, height))

    def paid(self, peer: bytes) -> float:
        return sum(penalty for who, penalty, _ in self.penalties if who == peer)


@pytest.fixture(scope="module")
def chain_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LevelDB chain of 5 blocks, built once; each test works on a copy."""
    directory = tmp_path_factory.mktemp("inbound-chain")
    store = ChainStore(directory / "db")
    try:
        store.initialize(make_genesis())
        build_chain(store, make_genesis())
    finally:
        store.close()
    return directory / "db"


@pytest.fixture
def store(chain_directory: Path, tmp_path: Path) -> Iterator[ChainStore]:
    import shutil

    shutil.copytree(chain_directory, tmp_path / "db")
    opened = ChainStore(tmp_path / "db")
    yield opened
    opened.close()


def run_with_driver(store: ChainStore, scenario: Callable[[ConsensusDriver, RecordingPeers], Awaitable[None]],
                    forgotten: list[tuple[str, Any]] | None = None, syncing: bool = False) -> RecordingPeers:
    """Run `scenario` with a follower driver deciding the height after the store's head."""
    peers = RecordingPeers()
    mempool = SimpleNamespace(signature_known_valid=lambda tx_hash: False, has_ready=lambda: False,
                              ready=lambda *limit: [])

    async def main() -> None:
        driver = ConsensusDriver(
            store=store, mempool=mempool, chain_id=CHAIN_ID, params=Params(), peers=peers,  # type: ignore[arg-type]
            broadcast=lambda kind, body: None, on_block=lambda result: None, metrics=NodeMetrics(),
            block_time_budget_ms=500, clock=lambda: 1_800_000_000_000,
            forget_seen=(lambda kind, body: forgotten.append((kind, body))) if forgotten is not None else None,
            sync_target=lambda: 10 if syncing else 0,
        )
        await driver._start_next_height()
        assert driver.state.height == store.head().height + 1 == 6
        try:
            await scenario(driver, peers)
        finally:
            await driver.stop()

    asyncio.run(main())
    return peers


def signed_proposal(signer: KeyPair, height: int, raw_block: bytes = b"", round_number: int = 0) -> dict[str, Any]:
    proposal = Proposal(CHAIN_ID, height, round_number, NO_POL_ROUND, BLOCK_HASH)
    return proposal_body(proposal, signer.sign(proposal.signing_bytes()), raw_block)


def signed_vote(signer: KeyPair, height: int, round_number: int = 0, block_hash: bytes = BLOCK_HASH,
                validator: bytes | None = None) -> dict[str, Any]:
    vote = Vote(CHAIN_ID, height, round_number, "prevote", block_hash)
    return vote_body(validator or signer.address, vote, signer.sign(vote.signing_bytes()))


def test_future_proposals_not_signed_by_the_proposer_are_not_kept_and_cost_a_lot(store: ChainStore) -> None:
    """Issue 13, attack 2: 20 proposals of 1 MiB for the next height, signed by a non-validator."""
    megabyte = b"\x00" * (1024 * 1024)

    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        for round_number in range(20):
            await driver.receive_proposal(ATTACKER, signed_proposal(OUTSIDER, 7, megabyte, round_number))
        assert len(driver._future) == 0 and driver._future.total_bytes == 0, "nothing unverified is kept"

    peers = run_with_driver(store, scenario)
    assert peers.paid(ATTACKER) == 20 * BAD_SIGNATURE_COST, "a bad signature costs a lot: banned after 3"
    assert peers.syncs == [], "an unverified proposal never starts block sync"


def test_while_syncing_the_height_the_network_decides_is_kept_against_the_projected_set(store: ChainStore) -> None:
    """A restarted node at head 5 syncing to 10 keeps the messages of height 11 (the round
    it will join; the seen-cache would not let them in again), checked again at height 11."""
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        await driver.receive_vote(HONEST, signed_vote(VALIDATOR, 11))
        await driver.receive_proposal(HONEST, signed_proposal(VALIDATOR, 11))
        await driver.receive_vote(ATTACKER, signed_vote(OUTSIDER, 11))
        await driver.receive_proposal(ATTACKER, signed_proposal(OUTSIDER, 12))
        assert len(driver._future) == 2
        driver.state = driver.state.evolve(height=11)
        for job in driver._future.take(11):
            await job()

    peers = run_with_driver(store, scenario, syncing=True)
    assert peers.paid(ATTACKER) == 2 * UNPROVEN_HEIGHT_COST, "the projected set may be stale: a little"
    assert peers.syncs == []
    assert (HONEST, "vote") in peers.relayed
    assert peers.paid(HONEST) == INVALID_BLOCK_COST, "the proposal passed its recheck; its (empty) block did not"


def test_a_node_that_fell_behind_keeps_verified_messages_of_the_catch_up_window(store: ChainStore) -> None:
    """Before block sync proved anything: heights up to head + 100, against the projected set."""
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        await driver.receive_vote(HONEST, signed_vote(VALIDATOR, 50))
        assert len(driver._future) == 1
        forged = signed_vote(VALIDATOR, 50, round_number=1)
        forged["signature"] = bytes(64)
        await driver.receive_vote(ATTACKER, forged)  # a member's vote: a bad signature is bad whatever the set
        await driver.receive_vote(ATTACKER, signed_vote(VALIDATOR, 5 + CATCH_UP_HEIGHTS_AHEAD + 1))
        assert len(driver._future) == 1

    peers = run_with_driver(store, scenario)
    assert peers.paid(HONEST) == 0 and peers.syncs == [], "only a message of head + 1 or + 2 may start sync"
    assert peers.paid(ATTACKER) == BAD_SIGNATURE_COST + UNPROVEN_HEIGHT_COST


def test_a_message_too_many_rounds_ahead_is_dropped_but_a_bad_signature_still_costs(store: ChainStore) -> None:
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        for height in (6, 7):  # the current height, the next one
            await driver.receive_proposal(ATTACKER, signed_proposal(OUTSIDER, height, round_number=70))
            await driver.receive_proposal(HONEST, signed_proposal(VALIDATOR, height, round_number=70))
            await driver.receive_vote(HONEST, signed_vote(VALIDATOR, height, round_number=70))
        assert driver._queue.waiting(CURRENT) == 0 and len(driver._future) == 0

    peers = run_with_driver(store, scenario)
    assert peers.paid(ATTACKER) == 2 * BAD_SIGNATURE_COST
    assert peers.paid(HONEST) == 0


def test_a_signed_proposal_whose_block_does_not_match_costs_the_relaying_peer_most(store: ChainStore) -> None:
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        await driver.receive_proposal(ATTACKER, signed_proposal(VALIDATOR, 6, b"not a block"))
        job = await driver._queue.get()
        assert job is not None
        await job()  # type: ignore[misc]

    peers = run_with_driver(store, scenario)
    assert peers.paid(ATTACKER) == INVALID_BLOCK_COST and peers.relayed == []


async def _far_messages(driver: ConsensusDriver, peers: RecordingPeers) -> None:
    for _ in range(3):
        await driver.receive_proposal(ATTACKER, signed_proposal(OUTSIDER, 2**62))
        await driver.receive_vote(ATTACKER, signed_vote(VALIDATOR, 2**62))
    await driver.receive_vote(ATTACKER, signed_vote(VALIDATOR, 2**62 + 1))
    assert len(driver._future) == 0


def test_a_message_for_a_far_height_never_reaches_sync_and_costs_a_little(store: ChainStore) -> None:
    """Issue 13: one unsigned proposal at height 2^62 set the sync target."""
    peers = run_with_driver(store, _far_messages)
    assert peers.syncs == []
    assert peers.paid(ATTACKER) == 7 * UNPROVEN_HEIGHT_COST, "no peer proved that height: each message costs"


def test_while_syncing_a_far_height_costs_only_once_per_new_highest_height(store: ChainStore) -> None:
    """A lagging node hears honest peers ahead of it: they pay about one charge per block."""
    peers = run_with_driver(store, _far_messages, syncing=True)
    assert peers.syncs == []
    assert peers.paid(ATTACKER) == 2 * BEYOND_WINDOW_COST


def test_future_votes_of_validators_are_kept_after_their_signature_within_a_byte_budget(store: ChainStore) -> None:
    forgotten: list[tuple[str, Any]] = []

    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        await driver.receive_vote(ATTACKER, signed_vote(OUTSIDER, 7))
        await driver.receive_vote(ATTACKER, signed_vote(OUTSIDER, 7, validator=VALIDATOR.address))
        assert len(driver._future) == 0
        driver._future.budget = FutureBudget(per_peer_bytes=3 * (256 + ENTRY_OVERHEAD_BYTES), total_bytes=10**6)
        for round_number in range(5):
            await driver.receive_vote(HONEST, signed_vote(VALIDATOR, 7, round_number))
        assert len(driver._future) == 3, "what exceeds the peer's budget is dropped"
        assert driver._future.peer_bytes(HONEST) <= driver._future.budget.per_peer_bytes
        await driver.receive_vote(ATTACKER, signed_vote(VALIDATOR, 7, 9))
        assert len(driver._future) == 4, "another peer has its own budget"

    peers = run_with_driver(store, scenario, forgotten)
    assert peers.paid(ATTACKER) == NOT_A_VALIDATOR_COST + BAD_SIGNATURE_COST
    assert peers.paid(HONEST) == 0, "a copy over the budget costs an honest peer nothing"
    assert [body["vote"]["round"] for kind, body in forgotten] == [3, 4], "dropped ones are not marked seen"
    assert (HONEST, 6) in peers.syncs, "a verified message of the next height may start sync (to head + 1)"
    assert max(height for _, height in peers.syncs) == 6


def test_kept_future_messages_reach_the_core_when_their_height_starts(store: ChainStore) -> None:
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        await driver.receive_vote(HONEST, signed_vote(VALIDATOR, 7))
        assert len(driver._future) == 1
        for job in driver._future.take(7):
            driver.state = driver.state.evolve(height=7)
            await job()
        assert driver._future.total_bytes == 0

    peers = run_with_driver(store, scenario)
    assert peers.relayed == [(HONEST, "vote")]


def test_malformed_and_wrong_chain_messages_cost_the_malformed_price(store: ChainStore) -> None:
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        await driver.receive_vote(ATTACKER, {"vote": 1})
        await driver.receive_proposal(ATTACKER, "junk")
        vote = Vote("another-chain", 6, 0, "prevote", BLOCK_HASH)
        await driver.receive_vote(ATTACKER, vote_body(VALIDATOR.address, vote, VALIDATOR.sign(vote.signing_bytes())))
        await driver.receive_evidence(ATTACKER, {"validator": 1})

    peers = run_with_driver(store, scenario)
    assert peers.paid(ATTACKER) == 4 * MALFORMED_COST


def _evidence(signer: KeyPair, height: int, validator: bytes | None = None, forge: bool = False) -> dict[str, Any]:
    votes = []
    for block_hash in (b"\x01" * 32, b"\x02" * 32):
        vote = Vote(CHAIN_ID, height, 0, "prevote", block_hash)
        signature = b"\x00" * 64 if forge else signer.sign(vote.signing_bytes())
        votes.append({**vote.to_map(), "signature": signature})
    return make_evidence(validator or signer.address, votes[0], votes[1])


def test_fake_evidence_is_refused_by_cheap_checks_first_and_bad_signatures_cost_a_lot(store: ChainStore) -> None:
    """Issue 13, attack 3: invalid evidence was dropped silently after both signature checks."""
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        checks = driver.metrics.signature_checks.labels("evidence")
        for height in range(1, 5):
            await driver.receive_evidence(ATTACKER, _evidence(OUTSIDER, height))  # not a validator
        await driver.receive_evidence(ATTACKER, _evidence(VALIDATOR, 6))  # not below the current height
        assert checks._value.get() == 0, "no signature was checked for items the cheap checks refuse"
        assert peers.paid(ATTACKER) > 0
        paid = peers.paid(ATTACKER)
        for height in range(1, 4):
            await driver.receive_evidence(ATTACKER, _evidence(VALIDATOR, height, forge=True))
        assert peers.paid(ATTACKER) - paid == 3 * (EVIDENCE_CHECK_COST + BAD_SIGNATURE_COST)
        assert len(driver.evidence) == 0
        await driver.receive_evidence(HONEST, _evidence(VALIDATOR, 2))  # real equivocation
        assert driver._queue.waiting("other") == 1, "valid evidence is queued for the driver"
        await driver.receive_evidence(HONEST, _evidence(VALIDATOR, 2))  # the same item again: seen
        assert checks._value.get() == 2 * 4

    peers = run_with_driver(store, scenario)
    assert peers.paid(ATTACKER) >= 100, "a peer flooding fake evidence is banned"
    assert peers.paid(HONEST) == EVIDENCE_CHECK_COST


def test_a_full_driver_queue_makes_the_peer_wait_and_the_nodes_own_jobs_pass(store: ChainStore) -> None:
    async def scenario(driver: ConsensusDriver, peers: RecordingPeers) -> None:
        for round_number in range(DRIVER_QUEUE_MESSAGES):
            await driver.receive_vote(HONEST, signed_vote(VALIDATOR, 6, round_number % 40,
                                                          block_hash=round_number.to_bytes(32, "big")))
        assert driver._queue.waiting(CURRENT) == DRIVER_QUEUE_MESSAGES
        blocked = asyncio.ensure_future(driver.receive_vote(HONEST, signed_vote(VALIDATOR, 6, 45)))
        await asyncio.sleep(0.05)
        assert not blocked.done(), "the peer's dispatch waits while the lane is full"
        ran: list[str] = []
        driver.submit(lambda: ran.append("own"))  # a timeout, a stored block: never waits
        own = await driver._queue.get()
        assert own is not None
        own()
        assert ran == ["own"], "the node's own jobs come first"
        assert await driver._queue.get() is not None  # the driver takes a peer's job ...
        await asyncio.wait_for(blocked, 10)  # ... and the waiting peer goes on
        assert driver._queue.waiting(CURRENT) == DRIVER_QUEUE_MESSAGES

    run_with_driver(store, scenario)


def test_the_seen_cache_forgets_a_dropped_message_so_an_honest_copy_is_delivered() -> None:
    from p2p.seen import SeenCache

    seen = SeenCache(10)
    assert seen.received(b"m" * 32, ATTACKER)
    assert not seen.received(b"m" * 32, HONEST), "a copy is a duplicate ..."
    seen.forget(b"m" * 32)
    assert seen.received(b"m" * 32, HONEST), "... unless the node dropped the first unprocessed"
