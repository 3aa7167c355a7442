"""Writing a snapshot of the state every `snapshot_interval` heights, in the background (R39).

`SnapshotWriter.after_block(h)` runs on the event loop after block h is stored: when h is a
multiple of `[statesync] snapshot_interval` it takes a LevelDB snapshot of the store there
and then (cheap: the state as of block h, whatever is committed next) and hands it to ONE
background thread; consensus and block sync never wait for it. A snapshot due while the
thread still writes the previous one is skipped (with a log line).

The thread reads only from that LevelDB snapshot, and its memory stays bounded whatever
the size of the state:

1. **measure**: one pass over the state counts its entries and bytes; the chunk depth d
   (0 … 16) is the smallest that makes the average chunk at most `TARGET_CHUNK_BYTES`;
2. **bucket**: a second pass appends every entry to one of at most `MAX_BUCKETS` temporary
   files by the first bits of its chunk index (buffered in memory up to
   `BUCKET_BUFFER_BYTES` in all, then appended to the files);
3. **chunk**: bucket by bucket (in prefix order), the entries are split into their chunks,
   sorted, hashed (T(entries, d), R39; `chunk_hash`) and appended to the `chunks` file; a chunk over
   `MAX_WRITTEN_CHUNK_BYTES` (an unlucky split) makes the writer start over at d + 1.

The manifest must fold up to the state_root of the stored head at h before anything is
published (never a wrong snapshot: an error is logged instead). Then the files are fsynced
and the directory renamed into place (node/snapshot_store.py); older snapshots beyond
`snapshot_keep` are deleted. `stop()` asks the thread to give up at its next check and
waits for it; an unfinished `.tmp-*` directory is removed at the next `start()`, which
writes the head's snapshot again if the head is a multiple of the interval and its
snapshot is missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import defaultdict
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
from prometheus_client import CollectorRegistry, Counter, Gauge

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import EMPTY
from marketplace_tx.rules.snapshots import (
    MAX_CHUNK_DEPTH,
    ChunkSummary,
    InvalidSnapshot,
    Manifest,
    check_manifest,
    chunk_index,
    encode_chunk,
)
from marketplace_tx.rules.state_tree import build_subtree, record_hash
from node.snapshot_store import CHUNKS_FILE, INDEX_FILE, MANIFEST_FILE, SnapshotStore
from node.storage import ChainStore, ReadView

log = logging.getLogger("marketchain.snapshots")

TARGET_CHUNK_BYTES = 256 * 1024
"""The chunk depth is chosen so that the average chunk holds at most this many bytes."""
MAX_WRITTEN_CHUNK_BYTES = 1024 * 1024
"""No chunk written is larger (issue 15: ≤ 1 MiB; R39 allows 4 MiB): else d + 1."""
MAX_BUCKETS = 256
"""Most temporary bucket files of pass 2 (each pass-3 step loads one)."""
BUCKET_BUFFER_BYTES = 4 * 1024 * 1024
"""Bytes of bucketed entries held in memory before they are appended to the files."""
ENTRY_OVERHEAD_BYTES = 8
"""Bytes of msgpack framing counted per entry when measuring (array and bin headers)."""
STOP_CHECK_ENTRIES = 4096
"""The thread checks whether it must stop every this many entries."""
STATE_END = b"\xff"
"""Above every state key (their first byte is a family tag letter, R35)."""


class _ChunkTooLarge(Exception):
    """A chunk came out over the written bound: start over one level deeper."""


class _Stopped(Exception):
    """The node is stopping: the write is abandoned (its temporary directory stays)."""


def choose_depth(total_bytes: int, target_bytes: int = TARGET_CHUNK_BYTES) -> int:
    """The smallest d ≤ 16 for which `total_bytes` over 2^d chunks is at most `target_bytes` each."""
    depth = 0
    while depth < MAX_CHUNK_DEPTH and total_bytes > target_bytes << depth:
        depth += 1
    return depth


def chunk_hash(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
    """T(entries, depth) of R35/R39 for a chunk's entries: the hash of the subtree record
    `state_tree.build_subtree` builds (each entry and node hashed once), the same value as
    `sparse_merkle.subtree_root` (tests check it)."""
    record, _ = build_subtree(depth, entries, with_records=False)
    return EMPTY if record is None else record_hash(record)


class SnapshotWriter:
    """Writes the state's snapshot after every `interval`-th height, one at a time, in a thread."""

    def __init__(
        self,
        store: ChainStore,
        snapshots: SnapshotStore,
        interval: int,
        registry: CollectorRegistry | None = None,
        target_chunk_bytes: int = TARGET_CHUNK_BYTES,
        max_chunk_bytes: int = MAX_WRITTEN_CHUNK_BYTES,
    ) -> None:
        self.store = store
        """The chain whose state is written (read through one LevelDB snapshot per job)."""
        self.snapshots = snapshots
        """Where snapshots are published."""
        self.interval = interval
        """`[statesync] snapshot_interval`: a snapshot after every multiple; 0 writes none."""
        self.target_chunk_bytes = target_chunk_bytes
        """The average chunk size the depth is chosen for (tests lower it to force deep splits)."""
        self.max_chunk_bytes = max_chunk_bytes
        """The largest chunk written; a larger one makes the writer go one level deeper."""
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        registry = registry if registry is not None else CollectorRegistry()
        self.written = Counter("marketchain_snapshots_written", "Snapshots written and published (R39).",
                               registry=registry)
        """Snapshots published since start."""
        self.seconds = Gauge("marketchain_snapshot_seconds", "Seconds the last snapshot took to write.",
                             registry=registry)
        """How long the last snapshot took."""
        self.height = Gauge("marketchain_snapshot_height", "Height of the newest published snapshot.",
                            registry=registry)
        """The newest published snapshot's height."""
        newest = snapshots.heights()
        self.height.set(newest[0] if newest else 0)

    @property
    def busy(self) -> bool:
        """True while a snapshot is being written."""
        return self._thread is not None and self._thread.is_alive()

    def due(self, height: int) -> bool:
        """Whether a snapshot is due after `height`."""
        return self.interval > 0 and height > 0 and height % self.interval == 0

    def after_block(self, height: int) -> None:
        """Block `height` was stored (and nothing after it yet): start its snapshot if due."""
        if not self.due(height) or self._stopping.is_set():
            return
        if self.busy:
            log.warning("snapshot %d skipped: the previous snapshot is still being written", height)
            return
        view_context = self.store.read_view()
        view = view_context.__enter__()
        self._thread = threading.Thread(
            target=self._job, args=(height, view_context, view), name=f"snapshot-{height}", daemon=True
        )
        self._thread.start()

    def start(self) -> None:
        """Remove unfinished writes, then write the head's snapshot if it is due and missing
        (the node stopped while writing it)."""
        self.snapshots.clean_temporary()
        head = self.store.head()
        if head is not None and self.due(head.height) and not self.snapshots.has(head.height):
            self.after_block(head.height)

    def stop(self) -> None:
        """Make the running job give up, and wait for it (before the store closes)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _job(self, height: int, view_context: AbstractContextManager[ReadView], view: ReadView) -> None:
        started = time.monotonic()
        try:
            manifest = self.write(height, view)
        except _Stopped:
            log.info("snapshot %d abandoned: the node is stopping", height)
            return
        except Exception:  # a failed snapshot must never stop the node
            log.exception("snapshot %d failed", height)
            return
        finally:
            view_context.__exit__(None, None, None)
        if manifest is not None:
            elapsed = time.monotonic() - started
            self.written.inc()
            self.seconds.set(elapsed)
            self.height.set(max(self.snapshots.heights(), default=0))
            log.info("snapshot %d written: %d chunks (depth %d) in %.1f s",
                     height, len(manifest.chunks), manifest.chunk_depth, elapsed)

    def write(self, height: int, view: ReadView) -> Manifest | None:
        """Write and publish snapshot `height` from `view` (whose head must be `height`);
        the manifest, or None if it was not published (the reason is logged)."""
        head = view.head()
        if head is None or head.height != height:
            log.error("snapshot %d not written: the store's head moved to %s", height, head and head.height)
            return None
        total = 0
        for number, (key, value) in enumerate(view.scan(b"", STATE_END)):
            self._check_stop(number)
            total += len(key) + len(value) + ENTRY_OVERHEAD_BYTES
        depth = choose_depth(total, self.target_chunk_bytes)
        while True:
            temporary = self.snapshots.temporary_path(height)
            try:
                summaries = self._write_chunks(view, depth, temporary)
            except _ChunkTooLarge:
                if depth == MAX_CHUNK_DEPTH:
                    log.error("snapshot %d not written: a chunk is over %d bytes at depth %d",
                              height, self.max_chunk_bytes, depth)
                    shutil.rmtree(temporary, ignore_errors=True)
                    return None
                depth += 1
                continue
            break
        manifest = Manifest(depth, tuple(summaries), height, head.state_root)
        try:
            check_manifest(manifest)  # never publish a snapshot that does not fold to the head's root
        except InvalidSnapshot as error:
            log.error("snapshot %d not published: %s", height, error)
            shutil.rmtree(temporary, ignore_errors=True)
            return None
        _write_synced(temporary / MANIFEST_FILE, manifest.encode())
        self.snapshots.publish(height, temporary)
        return manifest

    def _write_chunks(self, view: ReadView, depth: int, temporary: Path) -> list[ChunkSummary]:
        """Passes 2 and 3: the chunks file, the index file, and the chunks' summaries."""
        bucket_bits = min(depth, MAX_BUCKETS.bit_length() - 1)
        bucket_directory = temporary / "buckets"
        bucket_directory.mkdir()
        buffers: defaultdict[int, bytearray] = defaultdict(bytearray)
        buffered = 0
        for number, (key, value) in enumerate(view.scan(b"", STATE_END)):
            self._check_stop(number)
            packed = msgpack.packb([key, value], use_bin_type=True)
            buffers[chunk_index(key, depth) >> (depth - bucket_bits)] += packed
            buffered += len(packed)
            if buffered >= BUCKET_BUFFER_BYTES:
                _flush_buckets(bucket_directory, buffers)
                buffered = 0
        _flush_buckets(bucket_directory, buffers)
        summaries: list[ChunkSummary] = []
        places: list[list[int]] = []
        chunks_per_bucket = 1 << (depth - bucket_bits)
        with open(temporary / CHUNKS_FILE, "wb") as chunks_file:
            for bucket in range(1 << bucket_bits):
                by_chunk = self._load_bucket(bucket_directory / str(bucket), depth)
                for index in range(bucket * chunks_per_bucket, (bucket + 1) * chunks_per_bucket):
                    self._write_chunk(chunks_file, sorted(by_chunk.pop(index, ())), depth, summaries, places)
            _sync(chunks_file)
        shutil.rmtree(bucket_directory)
        _write_synced(temporary / INDEX_FILE, codec.encode(places))
        return summaries

    def _load_bucket(self, path: Path, depth: int) -> dict[int, list[tuple[bytes, bytes]]]:
        """One bucket file's entries, by chunk index."""
        by_chunk: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        if not path.exists():
            return by_chunk
        with open(path, "rb") as bucket_file:
            unpacker = msgpack.Unpacker(bucket_file, raw=False, use_list=False)
            for number, (key, value) in enumerate(unpacker):
                self._check_stop(number)
                by_chunk[chunk_index(key, depth)].append((key, value))
        path.unlink()  # the disk used stays about one copy of the state
        return by_chunk

    def _write_chunk(
        self, chunks_file: BinaryIO, entries: list[tuple[bytes, bytes]], depth: int,
        summaries: list[ChunkSummary], places: list[list[int]],
    ) -> None:
        """Append one chunk (entries sorted by key) and note its summary and place."""
        raw = encode_chunk(entries)
        if len(raw) > self.max_chunk_bytes:
            raise _ChunkTooLarge
        places.append([chunks_file.tell(), len(raw)])
        chunks_file.write(raw)
        summaries.append(ChunkSummary(len(entries), chunk_hash(entries, depth)))

    def _check_stop(self, number: int) -> None:
        if number % STOP_CHECK_ENTRIES == 0 and self._stopping.is_set():
            raise _Stopped


def _flush_buckets(directory: Path, buffers: defaultdict[int, bytearray]) -> None:
    """Append the buffered entries to their bucket files and empty the buffers."""
    for bucket, data in buffers.items():
        with open(directory / str(bucket), "ab") as bucket_file:
            bucket_file.write(data)
    buffers.clear()


def _sync(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())


def _write_synced(path: Path, data: bytes) -> None:
    """Write a file and make it durable."""
    with open(path, "wb") as file:
        file.write(data)
        _sync(file)
