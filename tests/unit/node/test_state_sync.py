"""The joiner (node/state_sync.py, PROTOCOL R37, R39) against in-process peers that serve a
real snapshot of a real chain: honest ones, and ones hostile in one way each.

The header is verified by the light client from the chain's genesis, every chunk against
the manifest; a peer is charged only for what it sent itself (R32, R39).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.rules.snapshots import Manifest
from node.config import StatesyncConfig
from node.state_sync import (
    PENALTY_BAD_CHUNK,
    PENALTY_BAD_HEADER,
    PENALTY_BAD_MANIFEST,
    PENALTY_MALFORMED,
    PENALTY_SILENT,
    PENALTY_UNSOLICITED,
    StateSync,
)
from node.state_sync_header import MAX_CHANGE_PAGES
from tests.unit.node.snapshot_chain import crowded_chain
from tests.unit.node.state_sync_peers import (
    FakePeer,
    Network,
    Penalties,
    RecordingRestore,
    Snapshot,
)

DEPTH = 3
"""8 chunks."""
FAST = StatesyncConfig(enable=True, discovery_time_s=0, discovery_timeout_s=4, chunk_request_timeout_s=1,
                       chunk_fetchers=4)
"""Short times, so that silent peers and give-ups are seen within seconds."""


@pytest.fixture(scope="module")
def chain_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Genesis, Snapshot]]:
    """A real chain of a few blocks over ~300 accounts, and the snapshot of its head."""
    chain = crowded_chain(Path(tmp_path_factory.mktemp("state_sync")) / "chain.db", extra_accounts=300, blocks=2)
    try:
        yield chain.genesis, Snapshot.of(chain.store, DEPTH)
    finally:
        chain.store.close()


def peer_id(number: int) -> bytes:
    """A made-up node address."""
    return bytes([number]) * 32


def joiner(genesis: Genesis, peers: dict[bytes, FakePeer], restore: RecordingRestore | None = None,
           config: StatesyncConfig = FAST, expected_peers: int = 0) -> tuple[StateSync, Network, Penalties, RecordingRestore]:
    """A StateSync wired to fake peers."""
    network, penalties = Network(peers), Penalties()
    restore = restore if restore is not None else RecordingRestore()
    state_sync = StateSync(genesis=genesis, config=config, restore=restore, send=network.send, peers=penalties,
                           connected=network.connected, expected_peers=expected_peers)
    network.receive = state_sync.receive
    return state_sync, network, penalties, restore


def run(state_sync: StateSync) -> int | None:
    """Run the state sync to its end (generous deadline)."""
    return asyncio.run(asyncio.wait_for(state_sync.run(), 60))


def test_joins_from_honest_peers_spreading_chunks(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    peers = {peer_id(number): FakePeer(snapshot) for number in (1, 2, 3)}
    state_sync, _, penalties, restore = joiner(genesis, peers)
    assert run(state_sync) == snapshot.manifest.height
    assert restore.finished and sorted(restore.written) == list(range(1 << DEPTH))
    assert restore.begun == [snapshot.manifest]
    assert penalties.given == []
    assert sum(1 for peer in peers.values() if peer.chunk_requests) >= 2  # parallel, over several peers
    assert state_sync.progress()["chunks"] == f"{1 << DEPTH}/{1 << DEPTH}"


@pytest.mark.parametrize("expected_peers", [2, 3])
def test_discovery_ends_early_once_every_expected_peer_offered(chain_snapshot: tuple[Genesis, Snapshot],
                                                               expected_peers: int) -> None:
    """With 2 persistent peers that both answer (and whose heads were heard), the joiner does not
    sit out discovery_time_s; with 3 expected and only 2 answering, it waits the whole discovery time."""
    genesis, snapshot = chain_snapshot
    peers = {peer_id(number): FakePeer(snapshot) for number in (1, 2)}
    slow = StatesyncConfig(enable=True, discovery_time_s=20, discovery_timeout_s=60, chunk_request_timeout_s=5)
    state_sync, _, _, restore = joiner(genesis, peers, config=slow, expected_peers=expected_peers)
    state_sync.claimed_height = lambda peer: snapshot.manifest.height  # their status heard: heads known
    started = time.monotonic()
    if expected_peers == 2:
        assert run(state_sync) == snapshot.manifest.height
        assert time.monotonic() - started < 15 and restore.finished
    else:
        with pytest.raises(TimeoutError):
            asyncio.run(asyncio.wait_for(state_sync.run(), 3))
        assert restore.begun == []  # still collecting offers from the peer that has not answered


def test_a_header_that_does_not_verify_costs_its_server_and_another_peer_is_used(
        chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    liar, honest = peer_id(1), peer_id(2)
    state_sync, _, penalties, restore = joiner(genesis, {liar: FakePeer(snapshot, "bad_header"),
                                                         honest: FakePeer(snapshot)})
    assert run(state_sync) == snapshot.manifest.height
    assert PENALTY_BAD_HEADER in penalties.of(liar)
    assert penalties.of(honest) == []
    assert restore.finished


def test_a_manifest_not_folding_to_the_verified_root_is_refused(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    liar, honest = peer_id(1), peer_id(2)
    peers = {liar: FakePeer(snapshot, "wrong_manifest"), honest: FakePeer(snapshot)}
    state_sync, _, penalties, restore = joiner(genesis, peers)
    assert run(state_sync) == snapshot.manifest.height
    assert penalties.of(liar) == [PENALTY_BAD_MANIFEST]
    assert peers[liar].chunk_requests == []  # not in the fetch set
    assert restore.begun == [snapshot.manifest]


def test_a_bad_chunk_costs_its_sender_who_is_not_asked_again(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    liar = peer_id(1)
    peers = {liar: FakePeer(snapshot, "corrupt_chunk"), peer_id(2): FakePeer(snapshot), peer_id(3): FakePeer(snapshot)}
    state_sync, _, penalties, restore = joiner(genesis, peers)
    asked_when_charged: list[int] = []
    record = penalties.penalize

    def penalize(peer: bytes, penalty: float, reason: str) -> None:
        asked_when_charged.append(len(peers[liar].chunk_requests))
        record(peer, penalty, reason)

    penalties.penalize = penalize  # type: ignore[method-assign]
    assert run(state_sync) == snapshot.manifest.height
    assert penalties.of(liar) == [PENALTY_BAD_CHUNK]  # once, though it had more chunks in flight
    assert len(peers[liar].chunk_requests) == asked_when_charged[0]  # never asked again
    assert penalties.of(peer_id(2)) == penalties.of(peer_id(3)) == []
    assert sorted(restore.written) == list(range(1 << DEPTH))  # its chunk fetched elsewhere
    assert state_sync.metrics.bad_chunks._value.get() == 1


def test_bad_chunks_from_two_peers_drop_the_manifest(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    first, second = peer_id(1), peer_id(2)
    peers = {first: FakePeer(snapshot, "corrupt_chunk"), second: FakePeer(snapshot, "corrupt_chunk"),
             peer_id(3): FakePeer(snapshot)}
    state_sync, _, penalties, restore = joiner(genesis, peers)
    assert run(state_sync) is None  # the only snapshot offered was dropped: block sync from genesis
    assert PENALTY_BAD_CHUNK in penalties.of(first) and PENALTY_BAD_CHUNK in penalties.of(second)
    assert PENALTY_BAD_MANIFEST in penalties.of(peer_id(3))  # "whoever served it" (R39)
    assert not restore.finished
    assert state_sync.progress()["phase"] == "failed"


def test_a_silent_peer_is_charged_and_its_chunks_rerouted(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    silent = peer_id(1)
    peers = {silent: FakePeer(snapshot, "silent_chunks"), peer_id(2): FakePeer(snapshot)}
    state_sync, _, penalties, restore = joiner(genesis, peers)
    assert run(state_sync) == snapshot.manifest.height
    assert penalties.of(silent) and set(penalties.of(silent)) == {PENALTY_SILENT}
    assert penalties.of(peer_id(2)) == []
    assert sorted(restore.written) == list(range(1 << DEPTH))


def test_newest_height_offered_by_two_peers_wins(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    height = snapshot.manifest.height
    lone = peer_id(9)
    fake_offer = {"chunk_depth": DEPTH, "chunks": 1 << DEPTH, "height": height + 1000}
    honest_offer = {"chunk_depth": DEPTH, "chunks": 1 << DEPTH, "height": height}
    peers = {peer_id(1): FakePeer(snapshot), peer_id(2): FakePeer(snapshot),
             lone: FakePeer(snapshot, offers=[fake_offer, honest_offer])}
    state_sync, network, penalties, _ = joiner(genesis, peers)
    assert run(state_sync) == height
    asked = [body["height"] for _, kind, body in network.sent if kind == "header_request"]
    assert asked[0] == height  # the height two peers offer is tried before the newer lone claim
    assert penalties.of(lone) == []


def test_a_resumed_restore_fetches_only_the_missing_chunks(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot

    class Progress:
        manifest: Manifest = snapshot.manifest
        header, commit, change_points = snapshot.header, snapshot.commit, ()
        done = frozenset({0, 1, 2})

    restore = RecordingRestore(pending_progress=Progress())
    peers = {peer_id(1): FakePeer(snapshot), peer_id(2): FakePeer(snapshot)}
    state_sync, network, penalties, _ = joiner(genesis, peers, restore)
    assert run(state_sync) == snapshot.manifest.height
    asked = sorted(body["index"] for _, kind, body in network.sent if kind == "chunk_request")
    assert asked == list(range(3, 1 << DEPTH))
    assert restore.begun == [] and restore.finished
    assert not [kind for _, kind, _ in network.sent if kind == "header_request"]  # the marker's header was verified


def test_no_usable_snapshot_gives_up_and_abandons_a_partial_restore(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot

    class Progress:
        manifest = Manifest(DEPTH, snapshot.manifest.chunks, snapshot.manifest.height + 7, bytes(32))
        header, commit, change_points, done = b"", b"", (), frozenset()

    restore = RecordingRestore(pending_progress=Progress())
    config = StatesyncConfig(enable=True, discovery_time_s=0, discovery_timeout_s=1, chunk_request_timeout_s=1)
    state_sync, _, _, _ = joiner(genesis, {peer_id(1): FakePeer(snapshot, "silent")}, restore, config)
    assert run(state_sync) is None
    assert restore.abandoned


def test_unsolicited_and_malformed_answers_are_charged(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    stranger = peer_id(7)
    state_sync, _, penalties, _ = joiner(genesis, {})
    body: dict[str, Any] = {"chunk": snapshot.chunks[0], "chunk_depth": DEPTH, "height": 5, "index": 0}

    async def main() -> None:
        state_sync.receive(stranger, "chunk", body)
        state_sync.receive(stranger, "manifest", {"chunk_depth": DEPTH, "height": 5, "manifest": b"x"})
        state_sync.receive(stranger, "header", {"height": 5})
        state_sync.receive(stranger, "light_changes", {"changes": []})
        state_sync.receive(stranger, "snapshots", {"snapshots": []})
        state_sync.receive(stranger, "chunk", {"index": "zero"})

    asyncio.run(main())
    assert penalties.of(stranger) == [PENALTY_UNSOLICITED] * 5 + [PENALTY_MALFORMED]


def test_an_offer_list_over_the_bound_is_malformed(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    flooder = peer_id(1)
    offers = [{"chunk_depth": DEPTH, "chunks": 1 << DEPTH, "height": height} for height in range(1, 18)]
    config = StatesyncConfig(enable=True, discovery_time_s=0, discovery_timeout_s=1, chunk_request_timeout_s=1)
    state_sync, _, penalties, _ = joiner(genesis, {flooder: FakePeer(snapshot, offers=offers)}, config=config)
    assert run(state_sync) is None
    assert penalties.of(flooder) == [PENALTY_MALFORMED]
    assert len(state_sync.book) == 0


def test_change_points_paged_without_end_cost_the_peer(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    pager, honest = peer_id(1), peer_id(2)
    state_sync, network, penalties, restore = joiner(genesis, {pager: FakePeer(snapshot, "endless_changes"),
                                                               honest: FakePeer(snapshot)})
    assert run(state_sync) == snapshot.manifest.height
    pages = [body for peer, kind, body in network.sent if peer == pager and kind == "light_changes_request"]
    assert len(pages) == MAX_CHANGE_PAGES  # bounded, not one request per height
    assert penalties.of(pager) == [PENALTY_BAD_HEADER]
    assert restore.finished


def test_a_repeated_offer_answer_is_unsolicited(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    chatty = peer_id(1)
    state_sync, _, penalties, _ = joiner(genesis, {chatty: FakePeer(snapshot)})
    offer = {"snapshots": [{"chunk_depth": DEPTH, "chunks": 1 << DEPTH, "height": snapshot.manifest.height}]}

    async def main() -> None:
        state_sync.peer_connected(chatty)
        await asyncio.sleep(0.05)  # its one answer arrives
        for _ in range(3):
            state_sync.receive(chatty, "snapshots", offer)

    asyncio.run(main())
    assert penalties.of(chatty) == [PENALTY_UNSOLICITED] * 3


def joiner_with_an_unfinal_offer(chain_snapshot: tuple[Genesis, Snapshot]) -> tuple[Any, Any, Any, bytes, int]:
    """A joiner whose peer 1 offers, beside the honest snapshot, one 1000 heights above its head."""
    genesis, snapshot = chain_snapshot
    height = snapshot.manifest.height
    liar = peer_id(1)
    unfinal = {"chunk_depth": 0, "chunks": 1, "height": height + 1000}
    honest_offer = {"chunk_depth": DEPTH, "chunks": 1 << DEPTH, "height": height}
    peers = {liar: FakePeer(snapshot, offers=[unfinal, honest_offer]), peer_id(2): FakePeer(snapshot)}
    state_sync, network, penalties, _ = joiner(genesis, peers)
    return state_sync, network, penalties, liar, height


def test_an_offer_above_the_peers_own_head_costs_it_and_is_dropped(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    state_sync, network, penalties, liar, height = joiner_with_an_unfinal_offer(chain_snapshot)
    state_sync.claimed_height = {liar: height, peer_id(2): height}.get  # their status: head = height
    assert run(state_sync) == height
    assert penalties.of(liar) == [PENALTY_BAD_HEADER]
    assert all(body["height"] == height for _, kind, body in network.sent if kind == "header_request")


def test_an_offer_that_came_before_the_peers_head_is_checked_once_the_head_is_heard(
        chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    state_sync, network, penalties, liar, height = joiner_with_an_unfinal_offer(chain_snapshot)
    asked: list[bytes] = []

    def claimed_height(peer: bytes) -> int | None:
        asked.append(peer)
        if peer == liar and asked.count(liar) == 1:
            return None  # its offers arrive before its status
        return height

    state_sync.claimed_height = claimed_height
    assert run(state_sync) == height
    assert asked.count(liar) >= 2
    assert penalties.of(liar) == [PENALTY_BAD_HEADER]
    assert all(body["height"] == height for _, kind, body in network.sent if kind == "header_request")


def test_a_peer_that_offers_then_serves_no_manifest_is_charged(chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    mute = peer_id(1)
    peers = {mute: FakePeer(snapshot, "silent_manifest"), peer_id(2): FakePeer(snapshot)}
    state_sync, _, penalties, restore = joiner(genesis, peers)
    assert run(state_sync) == snapshot.manifest.height
    assert penalties.of(mute) == [PENALTY_SILENT]
    assert peers[mute].chunk_requests == []
    assert restore.finished


def test_when_the_only_server_leaves_a_newcomer_serving_the_same_manifest_takes_over(
        chain_snapshot: tuple[Genesis, Snapshot]) -> None:
    genesis, snapshot = chain_snapshot
    leaver, newcomer = peer_id(1), peer_id(2)
    state_sync, network, penalties, restore = joiner(genesis, {leaver: FakePeer(snapshot)})
    send = network.send

    def send_then_leave(peer: bytes, kind: str, body: Any) -> bool:
        if peer == leaver and kind == "chunk_request" and len(network.peers[leaver].chunk_requests) == 3:
            del network.peers[leaver]  # it disconnects; another peer connects
            network.peers[newcomer] = FakePeer(snapshot)
            loop = asyncio.get_running_loop()
            loop.call_soon(state_sync.peer_gone, leaver)
            loop.call_soon(state_sync.peer_connected, newcomer)
            return False
        return send(peer, kind, body)

    network.send = send_then_leave  # type: ignore[method-assign]
    state_sync.send = send_then_leave
    state_sync.requests.send = send_then_leave
    assert run(state_sync) == snapshot.manifest.height
    assert restore.begun == [snapshot.manifest]  # one restore, not begun again
    assert sorted(restore.written) == list(range(1 << DEPTH))
    assert network.peers[newcomer].chunk_requests and penalties.given == []
