"""Serving state-sync requests (node/snapshot_serving.py) over a real LevelDB store with a
written snapshot and a change point: each malformed body is charged and unanswered, a
repeat within the window is answered once, the streamed queue is bounded per peer, what
the node does not have is an absent field, and the answers are what a joiner checks
(R37, R39). Also the four test faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus.light_client import verify_header
from marketplace_tx.chain.block import decode_commit
from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.primitives import codec
from marketplace_tx.rules.snapshots import (
    InvalidSnapshot,
    check_chunk,
    check_manifest,
    manifest_from_map,
)
from node import snapshot_serving
from node.fault_plan import SNAPSHOT_FAULT_VARIABLE, FaultPlan
from node.snapshot_serving import SnapshotServer
from node.snapshot_store import SnapshotStore
from node.snapshot_writer import SnapshotWriter
from tests.unit.node.recording_peers import RecordingPeers
from tests.unit.node.snapshot_chain import crowded_chain
from tests.unit.node.state_history_chain import VALIDATOR, RandomChain

ATTACKER = b"\x03" * 32
HONEST = b"\x04" * 32


@pytest.fixture(name="served")
def served_fixture(tmp_path: Path) -> Iterator[tuple[RandomChain, SnapshotStore]]:
    chain = crowded_chain(tmp_path / "db", extra_accounts=600, blocks=1)
    chain.commit(chain.vote("add", (VALIDATOR,)))  # a change point (R37)
    chain.random_blocks(1)
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    writer = SnapshotWriter(chain.store, snapshots, interval=1, target_chunk_bytes=4_000)
    with chain.store.read_view() as view:
        assert writer.write(chain.head.height, view) is not None
    yield chain, snapshots
    chain.store.close()


def _server(served: tuple[RandomChain, SnapshotStore], peers: RecordingPeers, fault: str | None = None) -> SnapshotServer:
    chain, snapshots = served
    return SnapshotServer(snapshots, chain.store, peers, fault=fault)  # type: ignore[arg-type]


MALFORMED = [
    ("snapshots_request", [1]),
    ("manifest_request", {"height": 3}),
    ("manifest_request", {"chunk_depth": 17, "height": 3}),
    ("manifest_request", {"chunk_depth": True, "height": 3}),
    ("manifest_request", {"chunk_depth": 2, "height": 0}),
    ("chunk_request", {"chunk_depth": 2, "height": 3, "index": 4}),
    ("chunk_request", {"chunk_depth": 2, "height": 3, "index": -1}),
    ("chunk_request", {"chunk_depth": 2, "height": 3, "index": b"\x00"}),
    ("chunk_request", "everything"),
    ("light_changes_request", {"after": 0, "limit": 0}),
    ("light_changes_request", {"after": 0, "limit": 33}),
    ("light_changes_request", {"after": -1, "limit": 2}),
    ("header_request", {"height": 2**64}),
    ("header_request", {}),
]


@pytest.mark.parametrize(("kind", "body"), MALFORMED)
def test_each_malformed_request_costs_10_and_is_not_answered(served, kind: str, body: Any) -> None:  # type: ignore[no-untyped-def]
    peers = RecordingPeers()
    server = _server(served, peers)
    server.serve(ATTACKER, kind, body)
    assert peers.streamed == []
    assert [(peer, penalty) for peer, penalty, _ in peers.penalties] == [(ATTACKER, 10.0)]


def test_snapshots_manifest_and_chunks_are_what_a_joiner_checks(served) -> None:  # type: ignore[no-untyped-def]
    chain, snapshots = served
    peers = RecordingPeers(room=10_000)
    server = _server(served, peers)
    server.serve(HONEST, "snapshots_request", {})
    ((kind, body),) = peers.answers(HONEST)
    info = snapshots.list()[0]
    assert kind == "snapshots" and body == {"snapshots": [info.to_map()]}
    server.serve(HONEST, "manifest_request", {"chunk_depth": info.chunk_depth, "height": info.height})
    kind, body = peers.answers(HONEST)[-1]
    manifest = manifest_from_map(codec.decode(body["manifest"]))
    assert kind == "manifest" and manifest.state_root == chain.head.state_root
    check_manifest(manifest)
    for index in range(info.chunks):
        server.serve(HONEST, "chunk_request", {"chunk_depth": info.chunk_depth, "height": info.height, "index": index})
        kind, body = peers.answers(HONEST)[-1]
        assert kind == "chunk" and body["index"] == index
        check_chunk(manifest, index, body["chunk"])
    assert peers.penalties == []


def test_unknown_snapshot_or_depth_answers_without_the_field(served) -> None:  # type: ignore[no-untyped-def]
    chain, snapshots = served
    peers = RecordingPeers()
    server = _server(served, peers)
    info = snapshots.list()[0]
    server.serve(HONEST, "manifest_request", {"chunk_depth": info.chunk_depth, "height": info.height - 1})
    server.serve(HONEST, "manifest_request", {"chunk_depth": (info.chunk_depth + 1) % 17, "height": info.height})
    server.serve(HONEST, "chunk_request", {"chunk_depth": 0, "height": info.height + 5, "index": 0})
    server.serve(HONEST, "header_request", {"height": chain.head.height + 5})
    answers = peers.answers(HONEST)
    assert [kind for kind, _ in answers] == ["manifest", "manifest", "chunk", "header"]
    assert all(set(body) & {"manifest", "chunk", "header", "commit"} == set() for _, body in answers)
    assert peers.penalties == []


def test_a_request_repeated_1000_times_is_answered_once(served) -> None:  # type: ignore[no-untyped-def]
    _, snapshots = served
    peers = RecordingPeers()
    server = _server(served, peers)
    info = snapshots.list()[0]
    request = {"chunk_depth": info.chunk_depth, "height": info.height, "index": 0}
    for _ in range(1000):
        server.serve(ATTACKER, "chunk_request", request)
        server.serve(ATTACKER, "snapshots_request", {})
    assert len(peers.streamed) == 2
    server.serve(HONEST, "chunk_request", request)  # another peer's request is its own
    assert len(peers.answers(HONEST)) == 1
    assert peers.penalties == []


def test_repeat_window_expires_and_memory_per_peer_is_bounded(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    chain, _ = served
    now = [0.0]
    peers = RecordingPeers(room=10**6)
    server = SnapshotServer(served[1], chain.store, peers, clock=lambda: now[0])  # type: ignore[arg-type]
    monkeypatch.setattr(snapshot_serving, "MAX_REMEMBERED_PER_PEER", 8)
    for height in range(1, 50):
        server.serve(ATTACKER, "header_request", {"height": height})
    assert len(server._served[ATTACKER]) == 8
    server.serve(ATTACKER, "header_request", {"height": 49})
    assert len(peers.streamed) == 49
    now[0] = snapshot_serving.REPEAT_WINDOW_S + 1
    server.serve(ATTACKER, "header_request", {"height": 49})  # the window passed: answered again
    assert len(peers.streamed) == 50
    server.forget(ATTACKER)
    assert ATTACKER not in server._served


def test_requests_beyond_the_streamed_queue_cost_2_and_are_dropped(served) -> None:  # type: ignore[no-untyped-def]
    _, snapshots = served
    peers = RecordingPeers(room=4)
    server = _server(served, peers)
    info = snapshots.list()[0]
    for index in range(min(info.chunks, 10)):
        server.serve(ATTACKER, "chunk_request", {"chunk_depth": info.chunk_depth, "height": info.height, "index": index})
    assert len(peers.streamed) == 4
    assert [penalty for _, penalty, _ in peers.penalties] == [2.0] * (min(info.chunks, 10) - 4)


def test_light_changes_and_header_verify_by_the_light_client(served) -> None:  # type: ignore[no-untyped-def]
    chain, _ = served
    peers = RecordingPeers()
    server = _server(served, peers)
    server.serve(HONEST, "light_changes_request", {"after": 0, "limit": 32})
    server.serve(HONEST, "header_request", {"height": chain.head.height})
    (_, changes), (_, header) = peers.answers(HONEST)
    assert "next" not in changes and len(changes["changes"]) == 1
    points = [ChangePoint(item["height"], item["header"], decode_commit(item["commit"]),
                          tuple(item["next_validators"])) for item in changes["changes"]]
    verified = verify_header(chain.genesis, points, header["header"], decode_commit(header["commit"]),
                             chain.head.height)
    assert verified.header.state_root == chain.head.state_root
    server.serve(HONEST, "light_changes_request", {"after": 0, "limit": 1})
    server.serve(HONEST, "light_changes_request", {"after": points[0].height, "limit": 1})
    (_, first), (_, second) = peers.answers(HONEST)[2:]
    assert len(first["changes"]) == 1 and second == {"changes": []}


def test_fault_corrupt_chunk_fails_the_hash_check_only(served) -> None:  # type: ignore[no-untyped-def]
    _, snapshots = served
    peers = RecordingPeers()
    server = _server(served, peers, "corrupt_chunk")
    info = snapshots.list()[0]
    manifest = snapshots.manifest(info.height)
    index = next(index for index, chunk in enumerate(manifest.chunks) if chunk.count)
    server.serve(HONEST, "chunk_request", {"chunk_depth": info.chunk_depth, "height": info.height, "index": index})
    ((_, body),) = peers.answers(HONEST)
    with pytest.raises(InvalidSnapshot, match="does not hash"):
        check_chunk(manifest, index, body["chunk"])


def test_fault_wrong_manifest_does_not_fold(served) -> None:  # type: ignore[no-untyped-def]
    _, snapshots = served
    peers = RecordingPeers()
    server = _server(served, peers, "wrong_manifest")
    info = snapshots.list()[0]
    server.serve(HONEST, "manifest_request", {"chunk_depth": info.chunk_depth, "height": info.height})
    ((_, body),) = peers.answers(HONEST)
    with pytest.raises(InvalidSnapshot, match="fold"):
        check_manifest(manifest_from_map(codec.decode(body["manifest"])))


def test_fault_unfinal_offers_a_snapshot_whose_header_cannot_verify(served) -> None:  # type: ignore[no-untyped-def]
    chain, _ = served
    peers = RecordingPeers()
    server = _server(served, peers, "unfinal")
    fake = chain.head.height + snapshot_serving.UNFINAL_DISTANCE
    server.serve(HONEST, "snapshots_request", {})
    server.serve(HONEST, "manifest_request", {"chunk_depth": 0, "height": fake})
    server.serve(HONEST, "header_request", {"height": fake})
    (_, offers), (_, manifest), (_, header) = peers.answers(HONEST)
    assert offers["snapshots"][0]["height"] == fake and len(offers["snapshots"]) == 2
    check_manifest(manifest_from_map(codec.decode(manifest["manifest"])))  # folds to its own made-up root
    with pytest.raises(Exception):  # noqa: B017 - LightClientError or a decode error: it never verifies
        verify_header(chain.genesis, [], header["header"], decode_commit(header["commit"]), fake)


def test_fault_silent_answers_only_snapshots_request(served) -> None:  # type: ignore[no-untyped-def]
    chain, snapshots = served
    peers = RecordingPeers()
    server = _server(served, peers, "silent")
    info = snapshots.list()[0]
    server.serve(HONEST, "snapshots_request", {})
    server.serve(HONEST, "manifest_request", {"chunk_depth": info.chunk_depth, "height": info.height})
    server.serve(HONEST, "header_request", {"height": chain.head.height})
    assert [kind for kind, _ in peers.answers(HONEST)] == ["snapshots"]


@pytest.mark.parametrize(("setting", "expected"), [
    ("corrupt_chunk", "corrupt_chunk"), ("wrong_manifest", "wrong_manifest"), ("unfinal", "unfinal"),
    ("silent", "silent"), ("", None), ("lie", None),
])
def test_fault_plan_reads_the_snapshot_fault_once(setting: str, expected: str | None) -> None:
    plan = FaultPlan.from_environment({SNAPSHOT_FAULT_VARIABLE: setting})
    assert plan.snapshot_fault == expected
    assert FaultPlan.from_environment({}).snapshot_fault is None
