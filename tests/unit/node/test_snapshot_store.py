"""The on-disk snapshot store (node/snapshot_store.py): only published snapshots are listed
and served (never a `.tmp-*` directory or one without its manifest), unreadable files are
absent rather than errors, a chunk longer than R39 allows is never read, publication keeps
the newest `keep`, and `clean_temporary` removes what interrupted writes left. A real kill -9
of a writing process leaves nothing published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from marketplace_tx.primitives import codec
from marketplace_tx.rules.snapshots import chunk_index, encode_chunk, make_manifest
from node import snapshot_store
from node.snapshot_store import CHUNKS_FILE, INDEX_FILE, MANIFEST_FILE, SnapshotStore

ENTRIES = [(b"a" + bytes([number]) * 32, b"value %d" % number) for number in range(20)]
ROOT = b"\x01" * 32
DEADLINE_S = 120.0


def _write(directory: Path, height: int, depth: int = 1) -> Path:
    """A complete snapshot directory of ENTRIES (not necessarily published)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = make_manifest(ENTRIES, depth, height, ROOT)
    places, offset = [], 0
    chunks = b""
    for index in range(1 << depth):
        raw = encode_chunk(sorted(entry for entry in ENTRIES if chunk_index(entry[0], depth) == index))
        places.append([offset, len(raw)])
        offset += len(raw)
        chunks += raw
    (directory / MANIFEST_FILE).write_bytes(manifest.encode())
    (directory / CHUNKS_FILE).write_bytes(chunks)
    (directory / INDEX_FILE).write_bytes(codec.encode(places))
    return directory


def _publish(store: SnapshotStore, height: int, depth: int = 1) -> None:
    store.publish(height, _write(store.temporary_path(height), height, depth))


def test_published_snapshots_are_listed_newest_first_and_served(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    for height in (10, 30, 20):
        _publish(store, height)
    assert [(info.height, info.chunk_depth, info.chunks) for info in store.list()] == [
        (30, 1, 2), (20, 1, 2), (10, 1, 2)]
    assert store.oldest_height() == 10 and store.has(20) and not store.has(40)
    manifest = store.manifest(20)
    assert manifest is not None and manifest.height == 20
    assert store.manifest_bytes(20) == manifest.encode() and store.manifest_length(20) == len(manifest.encode())
    served = [entry for index in range(2) for entry in codec.decode(store.chunk_bytes(20, index) or b"")]
    assert sorted(tuple(entry) for entry in served) == sorted(ENTRIES)
    assert store.chunk_bytes(20, 2) is None and store.chunk_bytes(20, -1) is None and store.chunk_length(40, 0) is None


def test_keep_deletes_the_oldest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    for height in (10, 20, 30):
        _publish(store, height)
    assert [info.height for info in store.list()] == [30, 20]
    assert not (tmp_path / "10").exists()
    with pytest.raises(ValueError):
        SnapshotStore(tmp_path, keep=0)


def test_unfinished_directories_are_never_listed_and_are_cleaned(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    _write(tmp_path / ".tmp-40", 40)  # a write that never reached its rename
    (tmp_path / "50").mkdir()  # a directory without a manifest
    (tmp_path / "notes").mkdir()
    assert store.list() == [] and store.manifest(40) is None and store.oldest_height() is None
    store.clean_temporary()
    assert not (tmp_path / ".tmp-40").exists()


def test_unreadable_files_are_absent_not_errors(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    directory = _write(tmp_path / "7", 7)
    (directory / MANIFEST_FILE).write_bytes(b"\xc1garbage")
    (directory / INDEX_FILE).write_bytes(b"\xc1")
    assert store.manifest(7) is None and store.list() == []
    assert store.chunk_bytes(7, 0) is None


def test_a_chunk_longer_than_r39_allows_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    _publish(store, 5)
    longest = max(store.chunk_length(5, index) or 0 for index in range(2))
    monkeypatch.setattr(snapshot_store, "MAX_SERVED_CHUNK_BYTES", longest - 1)
    store = SnapshotStore(tmp_path, keep=2)
    assert any(store.chunk_bytes(5, index) is None for index in range(2))


CRASHING_WRITER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from node import snapshot_writer
from node.snapshot_store import SnapshotStore
from node.snapshot_writer import SnapshotWriter
from tests.unit.node.snapshot_chain import crowded_chain

chain = crowded_chain(Path({database!r}), extra_accounts=2000, blocks=1)
original = snapshot_writer._write_synced

def write_then_die(path, data):
    original(path, data)
    if path.name == {point!r}:
        os.kill(os.getpid(), signal.SIGKILL)

snapshot_writer._write_synced = write_then_die
writer = SnapshotWriter(chain.store, SnapshotStore(Path({snapshots!r}), 2), interval=1, target_chunk_bytes=20_000)
with chain.store.read_view() as view:
    writer.write(chain.head.height, view)
"""


@pytest.mark.parametrize("point", [INDEX_FILE, MANIFEST_FILE])
def test_kill_9_while_writing_publishes_nothing(tmp_path: Path, point: str) -> None:
    root = str(Path(__file__).resolve().parents[3])
    code = CRASHING_WRITER.format(root=root, database=str(tmp_path / "db"), snapshots=str(tmp_path / "snapshots"),
                                  point=point)
    result = subprocess.run([sys.executable, "-c", code], cwd=root, timeout=DEADLINE_S, capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    store = SnapshotStore(tmp_path / "snapshots", keep=2)
    assert store.list() == [] and store.oldest_height() is None
    assert [entry for entry in os.listdir(tmp_path / "snapshots") if entry.startswith(".tmp-")]
    store.clean_temporary()
    assert os.listdir(tmp_path / "snapshots") == []
