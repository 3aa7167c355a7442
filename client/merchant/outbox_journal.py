"""The webhook outbox's durable journal: an append-only, fsynced file of JSON lines.

Lines (`op`):
- `enqueue` `{id, type, created, data}`: an event to deliver;
- `attempt` `{id, at}`: its first attempt (ms), so that `retry_for_s` survives restarts;
- `delivered` / `dead` `{id}`: it is finished (a 2xx answer, or written to the dead letters);
- `finished` `{ids}`: ids finished before a compaction, still remembered for idempotency.

At start the file is read back (a torn last line, from a crash mid-write, is cut off);
pending events keep only their metadata in memory (the byte offset of their `enqueue`
line), their data is read back from the file when they are sent. When the file grows
past `compact_min_bytes` and twice what it still needs, it is rewritten (a temporary
file, fsynced, renamed over it) with the remembered ids and the pending events only.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.durable_files import fsync_directory

JOURNAL_NAME = "webhooks-journal.jsonl"
"""The journal's file name in the outbox directory."""

IDS_PER_FINISHED_LINE = 1_000
"""Remembered ids per `finished` line written by a compaction."""

ID_OVERHEAD_BYTES = 3
"""Bytes a remembered id costs in a `finished` line besides its characters (quotes, comma)."""

logger = logging.getLogger("marketchain.merchant.webhooks")


@dataclass
class PendingEvent:
    """An event not yet delivered nor dead: metadata only, its data stays in the journal file."""

    id: str
    """The idempotency id."""
    type: str
    """The event type (`order.placed`, ...)."""
    created_ms: int
    """When it was enqueued (unix ms)."""
    sequence: int
    """Enqueue order: first attempts go in this order."""
    offset: int
    """Byte offset of its `enqueue` line in the journal."""
    length: int
    """Bytes of that line, newline included."""
    first_attempt_ms: int | None = None
    """When it was first POSTed (unix ms), None before."""
    attempts: int = 0
    """POSTs tried by this process (backoff restarts from the first step after a restart)."""
    due_s: float = 0.0
    """When its next attempt may start (unix seconds)."""
    last_error: str = ""
    """What the last attempt got: `HTTP 500`, `connection reset`, ..."""


class OutboxJournal:
    """The journal file of one outbox directory and what it says: pending and finished ids."""

    def __init__(self, directory: Path, max_remembered: int, compact_min_bytes: int) -> None:
        """Open (or create) `directory/JOURNAL_NAME` and read it back."""
        self.path = directory / JOURNAL_NAME
        """The journal file."""
        self.pending: dict[str, PendingEvent] = {}
        """Events to deliver, in enqueue order."""
        self.finished: OrderedDict[str, None] = OrderedDict()
        """The last `max_remembered` ids delivered or dead: enqueuing one again does nothing."""
        self.max_remembered = max_remembered
        """Bound of `finished`."""
        self.compact_min_bytes = compact_min_bytes
        """The file is never compacted below this size."""
        self.next_sequence = 0
        """Sequence of the next pending event."""
        directory.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.path.touch()
            fsync_directory(directory)
        self._load()
        self.compact()

    def knows(self, event_id: str) -> bool:
        """Whether `event_id` is pending or was finished (within the remembered ids)."""
        return event_id in self.pending or event_id in self.finished

    def add(self, event_id: str, event_type: str, created_ms: int, data: Any) -> PendingEvent:
        """Append an `enqueue` line (fsynced) and return the new pending event."""
        record = {"op": "enqueue", "id": event_id, "type": event_type, "created": created_ms,
                  "data": data}
        offset, length = self._append(record)
        return self._add_pending(event_id, event_type, created_ms, offset, length)

    def read(self, event: PendingEvent) -> dict[str, Any]:
        """The `enqueue` record of a pending event, read back from the file."""
        with open(self.path, "rb") as journal:
            journal.seek(event.offset)
            return json.loads(journal.read(event.length))

    def mark_attempt(self, event: PendingEvent, at_ms: int) -> None:
        """Record (fsynced) the first attempt of `event`."""
        event.first_attempt_ms = at_ms
        self._append({"op": "attempt", "id": event.id, "at": at_ms})

    def finish(self, event_id: str, outcome: str) -> None:
        """Record (fsynced) that `event_id` was `delivered` or is `dead`; it is never sent again."""
        self._append({"op": outcome, "id": event_id})
        self.pending.pop(event_id, None)
        self._remember(event_id)
        self.compact()

    def live_bytes(self) -> int:
        """Bytes a compacted journal would hold (about): pending lines and remembered ids."""
        pending = sum(event.length + (64 if event.first_attempt_ms else 0)
                      for event in self.pending.values())
        return pending + sum(len(event_id) + ID_OVERHEAD_BYTES for event_id in self.finished)

    def compact(self) -> None:
        """Rewrite the file with only what it still needs, if it outgrew `compact_min_bytes` and
        twice that need."""
        size = self.path.stat().st_size
        if size <= self.compact_min_bytes or size <= 2 * self.live_bytes():
            return
        temporary = self.path.with_suffix(".tmp")
        with open(self.path, "rb") as old, open(temporary, "wb") as new:
            finished = list(self.finished)
            for start in range(0, len(finished), IDS_PER_FINISHED_LINE):
                line = {"op": "finished", "ids": finished[start:start + IDS_PER_FINISHED_LINE]}
                new.write(encode_line(line))
            for event in self.pending.values():
                old.seek(event.offset)
                event.offset = new.tell()
                new.write(old.read(event.length))
                if event.first_attempt_ms is not None:
                    new.write(encode_line({"op": "attempt", "id": event.id,
                                           "at": event.first_attempt_ms}))
            new.flush()
            os.fsync(new.fileno())
        os.replace(temporary, self.path)
        fsync_directory(self.path.parent)
        logger.info("webhook journal compacted from %d to %d bytes", size, self.path.stat().st_size)

    def _append(self, record: dict[str, Any]) -> tuple[int, int]:
        """Append one line, fsynced; its offset and length."""
        line = encode_line(record)
        with open(self.path, "ab") as journal:
            offset = journal.tell()
            journal.write(line)
            journal.flush()
            os.fsync(journal.fileno())
        return offset, len(line)

    def _add_pending(self, event_id: str, event_type: str, created_ms: int, offset: int,
                     length: int) -> PendingEvent:
        """Track a pending event (from an `enqueue` line at `offset`)."""
        event = PendingEvent(event_id, event_type, created_ms, self.next_sequence, offset, length)
        self.next_sequence += 1
        self.pending[event_id] = event
        return event

    def _remember(self, event_id: str) -> None:
        """Add `event_id` to the finished ids, forgetting the oldest beyond `max_remembered`."""
        self.finished[event_id] = None
        self.finished.move_to_end(event_id)
        while len(self.finished) > self.max_remembered:
            self.finished.popitem(last=False)

    def _load(self) -> None:
        """Read the journal back; a torn last line is cut off, a bad line in the middle skipped."""
        with open(self.path, "rb+") as journal:
            offset = 0
            for line in journal:
                if not line.endswith(b"\n"):
                    logger.warning("webhook journal: cutting off a torn last line at byte %d", offset)
                    journal.truncate(offset)
                    journal.flush()
                    os.fsync(journal.fileno())
                    break
                try:
                    self._apply(json.loads(line), offset, len(line))
                except (ValueError, KeyError, TypeError) as error:
                    logger.warning("webhook journal: skipping a bad line at byte %d: %s", offset, error)
                offset += len(line)

    def _apply(self, record: dict[str, Any], offset: int, length: int) -> None:
        """Replay one journal line."""
        operation = record["op"]
        if operation == "enqueue":
            if not self.knows(record["id"]):
                self._add_pending(record["id"], record["type"], int(record["created"]), offset, length)
        elif operation == "attempt":
            if record["id"] in self.pending:
                self.pending[record["id"]].first_attempt_ms = int(record["at"])
        elif operation in ("delivered", "dead"):
            self.pending.pop(record["id"], None)
            self._remember(record["id"])
        elif operation == "finished":
            for event_id in record["ids"]:
                self._remember(event_id)
        else:
            raise ValueError(f"unknown op {operation!r}")


def encode_line(record: dict[str, Any]) -> bytes:
    """One journal line: compact JSON and a newline."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"

