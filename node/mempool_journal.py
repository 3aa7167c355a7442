"""The mempool journal: admitted transactions kept on disk so that a restart loses none.

Like geth's local-transaction journal, `HOME/data/mempool.journal` holds the raw bytes
of every transaction the node admitted and has not seen final. The format:

    MAGIC                                      (8 bytes, once)
    then per transaction:
      length        u32 big-endian             (bytes of `raw`)
      admitted_ms   u64 big-endian             (when this node admitted it)
      checksum      u32 big-endian             (CRC-32 of admitted_ms and raw)
      raw           `length` bytes             (the signed transaction, as submitted)

- **Appends** are buffered on the event loop (a list append per admitted transaction)
  and written by one background thread every `FLUSH_INTERVAL_S` (0.2 s), without
  fsync: a transaction the node accepted is in the file within about a second and
  survives `kill -9` of the node (the operating system holds the written bytes); a
  power cut may lose the last seconds.
- **Bound**: the file never exceeds `[mempool] journal_max_bytes`; a record that does
  not fit is not written (counted) and the next rewrite compacts the file.
- **Rewrite**: every `[mempool] journal_rewrite_interval_s` seconds, when the bound is
  reached, after start and at shutdown, the file is replaced by the transactions still
  pending: written to `mempool.journal.tmp`, fsynced, renamed over the journal, the
  directory fsynced.
- **Load** (at start, before serving): a torn or corrupt record (a crash mid-append)
  ends the journal: the file is truncated at the last good record, with a warning,
  never an error. The node re-admits what it read through the admission pipeline
  (node/admission.py, R10) and drops, silently but for one log line with counts, what
  is no longer admissible (final meanwhile, stale nonce, expired).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from prometheus_client import CollectorRegistry, Counter, Gauge

from client.keystore import fsync_directory
from marketplace_tx.primitives.errors import AdmissionError
from node.logging_setup import log_fields

log = logging.getLogger("marketchain.node")

JOURNAL_FILE = "mempool.journal"
"""The journal's file name in the node's data directory."""
MAGIC = b"MCMPJ01\n"
"""The first bytes of a journal file (format version 1)."""
RECORD_HEADER = struct.Struct(">IQI")
"""length, admitted_ms, checksum of one record."""
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""A record claiming more bytes than this is corrupt (transactions are far smaller)."""
FLUSH_INTERVAL_S = 0.2
"""How often buffered appends are written to the file."""


@dataclass(frozen=True)
class JournalEntry:
    """One journaled transaction."""

    raw: bytes
    """The signed transaction's bytes, as admitted."""
    admitted_ms: int
    """When this node admitted it (ms since the epoch; the mempool's TTL counts from it)."""


def _checksum(admitted_ms: int, raw: bytes) -> int:
    return zlib.crc32(raw, zlib.crc32(admitted_ms.to_bytes(8, "big")))


def encode_record(entry: JournalEntry) -> bytes:
    """The bytes of one record (header and raw transaction)."""
    header = RECORD_HEADER.pack(len(entry.raw), entry.admitted_ms, _checksum(entry.admitted_ms, entry.raw))
    return header + entry.raw


def decode_records(data: bytes) -> tuple[list[JournalEntry], int]:
    """The records of a journal's bytes, and the length of its good part: the records up
    to the first torn or corrupt one (or 0 if the file does not start with `MAGIC`)."""
    if not data.startswith(MAGIC):
        return [], 0
    entries: list[JournalEntry] = []
    offset = good = len(MAGIC)
    while offset + RECORD_HEADER.size <= len(data):
        length, admitted_ms, checksum = RECORD_HEADER.unpack_from(data, offset)
        start = offset + RECORD_HEADER.size
        if length > MAX_RECORD_BYTES or start + length > len(data):
            break
        raw = data[start:start + length]
        if _checksum(admitted_ms, raw) != checksum:
            break
        entries.append(JournalEntry(raw, admitted_ms))
        offset = good = start + length
    return entries, good


class MempoolJournal:
    """The journal file: load (truncating a bad tail), bounded appends, atomic rewrites.

    Thread-safe: every method takes the journal's lock, so the background thread that
    writes and the event loop never interleave their writes.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        """The journal file."""
        self.max_bytes = max_bytes
        """The most bytes the file may hold (`[mempool] journal_max_bytes`)."""
        self.size = 0
        """Bytes in the file now."""
        self.dropped = 0
        """Records not written since start because the file was full."""
        self.full = False
        """True once a record did not fit: the next rewrite compacts the file."""
        self.overflowed = False
        """True if the last rewrite left out transactions that did not fit: then a full
        file waits for the next periodic rewrite (rewriting sooner would not help)."""
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    @property
    def temporary_path(self) -> Path:
        """Where a rewrite is written before it is renamed over the journal."""
        return self.path.with_name(self.path.name + ".tmp")

    def load(self) -> list[JournalEntry]:
        """Every good record of the file (none if it is missing); a torn or corrupt
        tail is cut off the file, with a warning."""
        with self._lock:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return []
            entries, good = decode_records(data)
            if good < len(data):
                log.warning(
                    "mempool journal %s: %d bytes after the last good record (a torn or corrupt record) "
                    "are truncated; %d transactions kept", self.path, len(data) - good, len(entries),
                    extra=log_fields(event="journal_truncated", path=str(self.path), bytes=len(data) - good,
                                     kept=len(entries)),
                )
                with self.path.open("r+b") as handle:
                    handle.truncate(good)
                    if good == 0:
                        handle.write(MAGIC)
            self.size = max(good, len(MAGIC))
            return entries

    def append(self, entries: Iterable[JournalEntry]) -> int:
        """Write `entries` at the end of the file (no fsync), skipping those that do not
        fit in `max_bytes`; the number written."""
        with self._lock:
            handle = self._open()
            chunks = []
            size = self.size
            for entry in entries:
                record = encode_record(entry)
                if size + len(record) > self.max_bytes:
                    self.dropped += 1
                    self.full = True
                    continue
                chunks.append(record)
                size += len(record)
            if chunks:
                handle.write(b"".join(chunks))
                handle.flush()
                self.size = size
            return len(chunks)

    def rewrite(self, entries: Iterable[JournalEntry]) -> int:
        """Replace the file, atomically, by `entries` (as many as fit in `max_bytes`):
        temporary file, fsync, rename, fsync of the directory. The number written."""
        with self._lock:
            self._close()
            temporary = self.temporary_path
            temporary.parent.mkdir(parents=True, exist_ok=True)
            written = skipped = 0
            size = len(MAGIC)
            with temporary.open("wb") as handle:
                handle.write(MAGIC)
                for entry in entries:
                    record = encode_record(entry)
                    if size + len(record) > self.max_bytes:
                        skipped += 1
                        continue
                    handle.write(record)
                    size += len(record)
                    written += 1
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            fsync_directory(self.path.parent)
            self.size = size
            self.full = False
            self.overflowed = skipped > 0
            return written

    def close(self) -> None:
        """Close the file (appends reopen it)."""
        with self._lock:
            self._close()

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            if self._file.tell() == 0:
                self._file.write(MAGIC)
            self.size = self._file.tell()
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


Readmit = Callable[[Sequence[bytes], Sequence[int]], Awaitable[Sequence[object]]]
"""Admits journaled transactions again (`AdmissionPipeline.readmit`): raws and their
admission times in, per transaction the admitted transaction or its `AdmissionError`."""


@dataclass(frozen=True)
class RestoreCounts:
    """What became of the journal at start."""

    readmitted: int
    """Transactions admitted again."""
    expired: int
    """Transactions pending longer than the mempool's TTL, not admitted again."""
    refused: dict[str, int]
    """Transactions admission refused, by R12 code (`duplicate`: final meanwhile;
    `bad_nonce`: a transaction of the same sender and nonce is final …)."""


class JournalKeeper:
    """Keeps the journal in step with the mempool, from the event loop.

    `record` (called by admission for every admitted transaction) only buffers; a task
    writes the buffer every `FLUSH_INTERVAL_S` and rewrites the file with `pending()`
    every `rewrite_interval_s`, or sooner when it is full (unless the pending
    transactions alone overflowed it at the last rewrite), in one background thread (so
    the writes keep their order). `stop` flushes and rewrites one last time.
    """

    def __init__(
        self,
        journal: MempoolJournal,
        pending: Callable[[], list[JournalEntry]],
        clock_ms: Callable[[], int],
        rewrite_interval_s: float,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.journal = journal
        """The file."""
        self.pending = pending
        """The transactions pending in the mempool now, in the order to re-admit them."""
        self.clock_ms = clock_ms
        """The node's clock (the admission time written with each record)."""
        self.rewrite_interval_s = rewrite_interval_s
        """Seconds between two rewrites."""
        self.flush_interval_s = flush_interval_s
        """Seconds between two writes of the buffer."""
        self._buffer: list[JournalEntry] = []
        self.readmitted = Counter(
            "marketchain_mempool_journal_readmitted", "Transactions of the mempool journal admitted again at start.",
            registry=registry,
        )
        """Transactions re-admitted from the journal (`/metrics`)."""
        self.size = Gauge(
            "marketchain_mempool_journal_bytes", "Bytes in the mempool journal file.", registry=registry,
        )
        """The journal's size (`/metrics`), read when scraped."""
        self.size.set_function(lambda: journal.size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mempool-journal")
        self._task: asyncio.Task[None] | None = None

    def record(self, raws: Sequence[bytes]) -> None:
        """Admitted transactions, to be appended by the next flush."""
        now = self.clock_ms()
        self._buffer.extend(JournalEntry(raw, now) for raw in raws)

    async def load(self) -> list[JournalEntry]:
        """The journal's records (its bad tail cut off), read in the background thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.journal.load)

    async def restore(self, readmit: Readmit, ttl_ms: int) -> RestoreCounts:
        """Load the journal, admit its transactions again (those not expired), log the
        counts in one line, then rewrite the file with what is pending."""
        entries = await self.load()
        now = self.clock_ms()
        live = [entry for entry in entries if now - entry.admitted_ms <= ttl_ms]
        outcomes = await readmit([entry.raw for entry in live], [entry.admitted_ms for entry in live]) if live else []
        refused: dict[str, int] = {}
        for outcome in outcomes:
            if isinstance(outcome, AdmissionError):
                refused[outcome.code] = refused.get(outcome.code, 0) + 1
        counts = RestoreCounts(len(live) - sum(refused.values()), len(entries) - len(live), refused)
        self.readmitted.inc(counts.readmitted)
        if entries:
            dropped = ", ".join(f"{code} {count}" for code, count in sorted(refused.items())) or "none refused"
            log.info(
                "mempool journal: %d transactions admitted again, %d expired, refused: %s",
                counts.readmitted, counts.expired, dropped,
                extra=log_fields(event="journal_restored", readmitted=counts.readmitted, expired=counts.expired,
                                 refused=refused),
            )
        await self.rewrite()
        return counts

    async def flush(self) -> None:
        """Write the buffered records now."""
        batch, self._buffer = self._buffer, []
        if batch:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.journal.append, batch)

    async def rewrite(self) -> None:
        """Replace the file by the transactions pending now (the buffer is dropped: the
        pending transactions include it)."""
        self._buffer = []
        entries = self.pending()
        await asyncio.get_running_loop().run_in_executor(self._executor, self.journal.rewrite, entries)

    def start(self) -> None:
        """Start the task that flushes and rewrites."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_rewrite = loop.time() + self.rewrite_interval_s
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                if (self.journal.full and not self.journal.overflowed) or loop.time() >= next_rewrite:
                    await self.rewrite()
                    next_rewrite = loop.time() + self.rewrite_interval_s
                else:
                    await self.flush()
            except OSError as error:  # a full disk must not stop the node
                log.warning("cannot write the mempool journal %s: %s", self.journal.path, error,
                            extra=log_fields(event="journal_write_failed", path=str(self.journal.path)))

    async def stop(self) -> None:
        """Stop the task, rewrite the file with the transactions still pending, close it."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self.rewrite()
        except OSError as error:
            log.warning("cannot write the mempool journal %s: %s", self.journal.path, error,
                        extra=log_fields(event="journal_write_failed", path=str(self.journal.path)))
        self.journal.close()
        self._executor.shutdown(wait=True)
