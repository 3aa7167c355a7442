"""The snapshot writer (node/snapshot_writer.py) on a real LevelDB ChainStore: its files
reproduce `make_manifest` over the same state at several depths (a depth above 8 forced by
a small target), chunks stay under the written bound, a write that fails or stops midway
publishes nothing, and the background job reads the state as of its height whatever is
committed next; the protocol's snapshot vectors reproduce from a LevelDB holding their entries."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import subtree_root
from marketplace_tx.rules.snapshots import (
    check_chunk,
    check_manifest,
    encode_chunk,
    make_manifest,
    split_chunks,
)
from marketplace_tx.rules.state_transition import ChainTip
from node import snapshot_writer, storage
from node.snapshot_store import SnapshotStore
from node.snapshot_writer import SnapshotWriter, choose_depth, chunk_hash
from node.storage import ChainStore
from tests.unit.node.snapshot_chain import crowded_chain
from tests.unit.node.state_history_chain import RandomChain

DEADLINE_S = 120.0


@pytest.fixture(name="chain")
def chain_fixture(tmp_path: Path):  # type: ignore[no-untyped-def]
    chain = crowded_chain(tmp_path / "db")
    yield chain
    chain.store.close()


def _state(chain: RandomChain) -> list[tuple[bytes, bytes]]:
    return sorted(chain.states[-1].items())


def _write(chain: RandomChain, snapshots: SnapshotStore, target: int, max_chunk: int = 1 << 20):  # type: ignore[no-untyped-def]
    writer = SnapshotWriter(chain.store, snapshots, interval=1, target_chunk_bytes=target, max_chunk_bytes=max_chunk)
    with chain.store.read_view() as view:
        return writer.write(chain.head.height, view)


@pytest.mark.parametrize("depth", [0, 1, 3, 8, 12])
def test_chunk_hash_is_the_reference_subtree_root(depth: int) -> None:
    rng = random.Random(depth)
    for size in (0, 1, 2, 3, 17, 400):
        entries = sorted({rng.randbytes(rng.randint(1, 40)): rng.randbytes(rng.randint(0, 30))
                          for _ in range(size)}.items())
        for chunk in split_chunks(entries, depth):
            assert chunk_hash(chunk, depth) == subtree_root(chunk, depth)


def test_choose_depth_keeps_the_average_chunk_under_the_target() -> None:
    assert choose_depth(0) == 0
    assert choose_depth(256 * 1024) == 0
    assert choose_depth(256 * 1024 + 1) == 1
    assert choose_depth(10**12) == 16


@pytest.mark.parametrize("target", [1 << 30, 40_000, 3_000, 100])
def test_written_snapshot_reproduces_make_manifest(chain: RandomChain, tmp_path: Path, target: int) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    manifest = _write(chain, snapshots, target)
    assert manifest is not None
    entries = _state(chain)
    assert len(entries) > 3000
    expected = make_manifest(entries, manifest.chunk_depth, chain.head.height, chain.head.state_root)
    assert snapshots.manifest_bytes(chain.head.height) == expected.encode()
    check_manifest(manifest)
    chunks = split_chunks(entries, manifest.chunk_depth)
    for index, chunk in enumerate(chunks):
        raw = snapshots.chunk_bytes(chain.head.height, index)
        assert raw == encode_chunk(chunk)
        check_chunk(manifest, index, raw)
    if target == 100:
        assert manifest.chunk_depth > 8  # 2^12+ chunks: deeper than the 256 buckets
    info = snapshots.list()[0]
    assert (info.height, info.chunk_depth, info.chunks) == (chain.head.height, manifest.chunk_depth, len(chunks))


def test_a_chunk_over_the_bound_makes_the_writer_go_deeper(chain: RandomChain, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    manifest = _write(chain, snapshots, target=1 << 30, max_chunk=20_000)
    assert manifest is not None and manifest.chunk_depth >= 4
    for index in range(len(manifest.chunks)):
        assert len(snapshots.chunk_bytes(chain.head.height, index) or b"") <= 20_000


def test_failure_midway_publishes_nothing_and_start_cleans_it(
    chain: RandomChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    writer = SnapshotWriter(chain.store, snapshots, interval=chain.head.height)

    def crash(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(snapshot_writer, "_write_synced", crash)
    with chain.store.read_view() as view, pytest.raises(OSError):
        writer.write(chain.head.height, view)
    assert snapshots.list() == [] and not snapshots.has(chain.head.height)
    assert any(entry.name.startswith(".tmp-") for entry in snapshots.directory.iterdir())
    monkeypatch.undo()
    writer.start()  # removes the leftovers, then writes the head's missing snapshot
    writer._thread.join(DEADLINE_S)  # type: ignore[union-attr]
    assert [info.height for info in snapshots.list()] == [chain.head.height]
    assert not any(entry.name.startswith(".tmp-") for entry in snapshots.directory.iterdir())


def test_a_manifest_that_does_not_fold_to_the_head_root_is_not_published(
    chain: RandomChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    monkeypatch.setattr(snapshot_writer, "chunk_hash", lambda entries, depth: b"\x07" * 32)
    assert _write(chain, snapshots, target=40_000) is None
    assert snapshots.list() == []


def test_background_job_reads_the_state_of_its_height(chain: RandomChain, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    height = chain.head.height + 1
    writer = SnapshotWriter(chain.store, snapshots, interval=height, target_chunk_bytes=3_000)
    chain.random_blocks(1)
    state_then = _state(chain)
    release = threading.Event()
    original = writer.write

    def slow_write(job_height, view):  # type: ignore[no-untyped-def]
        release.wait(DEADLINE_S)
        return original(job_height, view)

    writer.write = slow_write  # type: ignore[method-assign]
    writer.after_block(height)
    assert writer.busy
    writer.after_block(height)  # due again while busy: skipped
    chain.random_blocks(2)  # committed while the job waits
    release.set()
    writer._thread.join(DEADLINE_S)  # type: ignore[union-attr]
    manifest = snapshots.manifest(height)
    assert manifest is not None
    assert manifest == make_manifest(state_then, manifest.chunk_depth, height, chain.tips[height].state_root)
    assert writer.written._value.get() == 1  # type: ignore[attr-defined]


def test_keep_n_newest(chain: RandomChain, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    writer = SnapshotWriter(chain.store, snapshots, interval=1, target_chunk_bytes=40_000)
    for _ in range(3):
        chain.random_blocks(1)
        writer.after_block(chain.head.height)
        writer._thread.join(DEADLINE_S)  # type: ignore[union-attr]
    assert [info.height for info in snapshots.list()] == [chain.head.height, chain.head.height - 1]
    assert snapshots.oldest_height() == chain.head.height - 1
    assert writer.height._value.get() == chain.head.height  # type: ignore[attr-defined]
    index = codec.decode((snapshots.directory / str(chain.head.height) / "index").read_bytes())
    assert len(index) == snapshots.list()[0].chunks


def test_stop_abandons_a_running_job_and_nothing_starts_after(chain: RandomChain, tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", keep=2)
    writer = SnapshotWriter(chain.store, snapshots, interval=chain.head.height, target_chunk_bytes=3_000)
    started = threading.Event()
    original = writer._check_stop

    def check_stop(number: int) -> None:
        started.set()
        original(0)  # every entry checks, so the stop is seen at once

    writer._check_stop = check_stop  # type: ignore[method-assign]
    release = threading.Event()
    measured = writer.write

    def held_write(job_height, view):  # type: ignore[no-untyped-def]
        release.wait(DEADLINE_S)
        return measured(job_height, view)

    writer.write = held_write  # type: ignore[method-assign]
    writer.after_block(chain.head.height)
    assert writer.busy
    writer._stopping.set()
    release.set()
    writer.stop()
    assert started.is_set() and not writer.busy
    writer.after_block(chain.head.height)  # after stop: nothing starts
    assert not writer.busy and snapshots.list() == []


VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "protocol-v2-state.json").read_text())
"""The v2 state vectors: R39 manifests the writer's files must reproduce byte for byte."""


@pytest.mark.parametrize("index", range(len(VECTORS["snapshots"])))
def test_writer_reproduces_the_protocol_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    vector = VECTORS["snapshots"][index]
    tree = next(tree for tree in VECTORS["trees"] if tree["name"] == vector["tree"])
    store = ChainStore(tmp_path / "db")
    try:
        for key, value in tree["entries"]:
            store.db.put(storage.STATE + bytes.fromhex(key), bytes.fromhex(value))
        root = bytes.fromhex(vector["state_root"])
        store.db.put(storage.HEAD_KEY, storage._encode_tip(ChainTip(5, bytes(32), 0, root)))
        monkeypatch.setattr(snapshot_writer, "choose_depth", lambda total, target: vector["chunk_depth"])
        snapshots = SnapshotStore(tmp_path / "snapshots", keep=1)
        with store.read_view() as view:
            manifest = SnapshotWriter(store, snapshots, interval=5).write(5, view)
    finally:
        store.close()
    assert manifest is not None and manifest.chunk_depth == vector["chunk_depth"]
    assert [{"count": chunk.count, "hash": chunk.hash.hex()} for chunk in manifest.chunks] == vector["chunks"]
    assert snapshots.manifest_bytes(5) == manifest.encode()
