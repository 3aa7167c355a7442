"""The snapshots this node wrote, on disk, and their atomic publication (PROTOCOL R39).

Layout, under `HOME/data/snapshots/` (docs/storage.md):

    <height>/manifest   the canonical manifest bytes (`Manifest.encode()`)
    <height>/chunks     the canonical bytes of every chunk, concatenated in prefix order
    <height>/index      canonical msgpack `[[offset, length], …]`: chunk i's place in `chunks`

A snapshot is written into `.tmp-<height>/` (node/snapshot_writer.py), every file fsynced,
then the directory is renamed to `<height>` and the parent directory fsynced: a crash at
any moment leaves either the whole snapshot or no `<height>` directory at all. A
`.tmp-*` directory is never listed or served, and `clean_temporary` (at the writer's
start) removes what an interrupted write left. Only the newest `keep` snapshots stay.

Reads are cheap and bounded: a manifest (at most 65,536 chunk summaries, ~2.6 MB) and one
chunk (at most `MAX_SERVED_CHUNK_BYTES`) at a time, read from the files when asked.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError
from marketplace_tx.rules.snapshots import (
    MAX_CHUNK_BYTES,
    InvalidSnapshot,
    Manifest,
    manifest_from_map,
)

log = logging.getLogger("marketchain.snapshots")

MANIFEST_FILE = "manifest"
"""The canonical manifest bytes of a snapshot."""
CHUNKS_FILE = "chunks"
"""Every chunk's canonical bytes, concatenated in prefix order."""
INDEX_FILE = "index"
"""Canonical `[[offset, length], …]` of the chunks in `CHUNKS_FILE`."""
TEMPORARY_PREFIX = ".tmp-"
"""A snapshot being written lives in `.tmp-<height>` until it is renamed."""
MAX_SERVED_CHUNK_BYTES = MAX_CHUNK_BYTES
"""A stored chunk longer than this (R39's 4 MiB) is never read into memory or served."""


@dataclass(frozen=True)
class SnapshotInfo:
    """One published snapshot, as `snapshots` and `GET /snapshots` list it (R39)."""

    height: int
    """The height whose state it holds."""
    chunk_depth: int
    """d: it has 2^d chunks."""
    chunks: int
    """How many chunks (2^d)."""

    def to_map(self) -> dict[str, int]:
        """`{chunk_depth, chunks, height}`."""
        return {"chunk_depth": self.chunk_depth, "chunks": self.chunks, "height": self.height}


class SnapshotStore:
    """The published snapshots in one directory (`HOME/data/snapshots`)."""

    def __init__(self, directory: Path, keep: int) -> None:
        if keep < 1:
            raise ValueError("snapshot_keep must be at least 1")
        self.directory = Path(directory)
        """Where the snapshot directories live."""
        self.keep = keep
        """How many of the newest snapshots stay (`[statesync] snapshot_keep`)."""
        self._infos: dict[int, SnapshotInfo] = {}
        self._indexes: dict[int, list[tuple[int, int]]] = {}
        self._cache_lock = threading.Lock()  # the writer thread publishes while readers read
        self.directory.mkdir(parents=True, exist_ok=True)

    # --- reading ---------------------------------------------------------------------

    def heights(self) -> list[int]:
        """Heights of the published snapshots, newest first (temporary directories aside)."""
        found = []
        for entry in os.listdir(self.directory):
            if entry.isdigit() and (self.directory / entry / MANIFEST_FILE).is_file():
                found.append(int(entry))
        return sorted(found, reverse=True)

    def list(self) -> list[SnapshotInfo]:
        """The published snapshots, newest first."""
        infos = []
        for height in self.heights():
            info = self.info(height)
            if info is not None:
                infos.append(info)
        return infos

    def info(self, height: int) -> SnapshotInfo | None:
        """What snapshot `height` is made of, or None if it is not published (or unreadable)."""
        info = self._infos.get(height)
        if info is None:
            manifest = self.manifest(height)
            if manifest is None:
                return None
            info = SnapshotInfo(height, manifest.chunk_depth, len(manifest.chunks))
            self._infos[height] = info
        return info

    def has(self, height: int) -> bool:
        """Whether snapshot `height` is published."""
        return (self._path(height) / MANIFEST_FILE).is_file()

    def oldest_height(self) -> int | None:
        """The oldest published snapshot's height (the pruner keeps blocks from it on), or None."""
        heights = self.heights()
        return heights[-1] if heights else None

    def manifest_bytes(self, height: int) -> bytes | None:
        """The canonical manifest bytes of snapshot `height`, or None."""
        try:
            return (self._path(height) / MANIFEST_FILE).read_bytes()
        except OSError:
            return None

    def manifest(self, height: int) -> Manifest | None:
        """The decoded manifest of snapshot `height`, or None (absent or unreadable)."""
        raw = self.manifest_bytes(height)
        if raw is None:
            return None
        try:
            return manifest_from_map(codec.decode(raw))
        except (CodecError, InvalidSnapshot) as error:
            log.error("snapshot %d: its manifest is unreadable (%s); not served", height, error)
            return None

    def chunk_bytes(self, height: int, index: int) -> bytes | None:
        """The canonical bytes of chunk `index` of snapshot `height`, read from disk now, or None."""
        where = self._chunk_place(height, index)
        if where is None:
            return None
        offset, length = where
        try:
            with open(self._path(height) / CHUNKS_FILE, "rb") as chunks:
                chunks.seek(offset)
                raw = chunks.read(length)
        except OSError:
            return None
        return raw if len(raw) == length else None

    def chunk_length(self, height: int, index: int) -> int | None:
        """How many bytes chunk `index` of snapshot `height` is (from the index, without reading it)."""
        where = self._chunk_place(height, index)
        return None if where is None else where[1]

    def manifest_length(self, height: int) -> int | None:
        """How many bytes the manifest of snapshot `height` is, or None."""
        try:
            return (self._path(height) / MANIFEST_FILE).stat().st_size
        except OSError:
            return None

    def _chunk_place(self, height: int, index: int) -> tuple[int, int] | None:
        """(offset, length) of a chunk in the `chunks` file, from the cached index."""
        index_rows = self._indexes.get(height)
        if index_rows is None:
            try:
                decoded = codec.decode((self._path(height) / INDEX_FILE).read_bytes())
            except (OSError, CodecError):
                return None
            index_rows = [(int(row[0]), int(row[1])) for row in decoded]
            with self._cache_lock:
                self._indexes[height] = index_rows
                while len(self._indexes) > self.keep + 1:
                    del self._indexes[next(iter(self._indexes))]
        if not 0 <= index < len(index_rows):
            return None
        offset, length = index_rows[index]
        return None if length > MAX_SERVED_CHUNK_BYTES else (offset, length)

    # --- writing ---------------------------------------------------------------------

    def temporary_path(self, height: int) -> Path:
        """Where snapshot `height` is written before it is published (emptied now)."""
        path = self.directory / f"{TEMPORARY_PREFIX}{height}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def publish(self, height: int, temporary: Path) -> None:
        """Make the fully written and fsynced `temporary` directory snapshot `height`:
        rename it into place, fsync the parent directory, then drop the oldest beyond `keep`."""
        final = self._path(height)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync_directory(self.directory)
        self._forget(height)
        self.prune()

    def prune(self) -> None:
        """Delete every published snapshot but the newest `keep`."""
        for height in self.heights()[self.keep:]:
            self._forget(height)
            shutil.rmtree(self._path(height), ignore_errors=True)
            log.info("snapshot %d deleted (snapshot_keep = %d)", height, self.keep)
        _fsync_directory(self.directory)

    def clean_temporary(self) -> None:
        """Remove what interrupted writes left (`.tmp-*` directories)."""
        for entry in os.listdir(self.directory):
            if entry.startswith(TEMPORARY_PREFIX):
                shutil.rmtree(self.directory / entry, ignore_errors=True)
                log.info("removed the unfinished snapshot directory %s", entry)

    def _forget(self, height: int) -> None:
        """Drop what is cached of snapshot `height`."""
        with self._cache_lock:
            self._infos.pop(height, None)
            self._indexes.pop(height, None)

    def _path(self, height: int) -> Path:
        return self.directory / str(height)


def _fsync_directory(path: Path) -> None:
    """Make a rename or deletion inside `path` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
