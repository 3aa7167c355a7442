"""Dead letters: webhooks that never got through within `retry_for_s`, kept for `merchant replay`.

`dead-letters.jsonl` in the agent's state directory holds one JSON line per event, with
everything needed to send the very same body again (id, type, created, data) and why it
failed. The running agent appends to it and `marketchain merchant replay` rewrites it
(dropping what it delivered), both under an exclusive lock on `dead-letters.lock`, so
that neither loses the other's lines. A line is written (fsynced) before the outbox's
journal says the event is dead: a crash in between leaves the same id twice, which
reading dedupes.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from client.durable_files import write_atomically
from client.merchant.outbox_journal import encode_line

DEAD_LETTERS_NAME = "dead-letters.jsonl"
"""The dead-letter file's name in the agent's state directory."""

LOCK_NAME = "dead-letters.lock"
"""The lock file serialising writers of the dead-letter file."""


@dataclass(frozen=True)
class DeadLetter:
    """An event given up on, with enough to send its identical body again."""

    id: str
    """The idempotency id."""
    type: str
    """The event type."""
    created: int
    """The body's `created` (unix ms)."""
    data: Any
    """The body's `data`."""
    attempts: int
    """POSTs tried (by the last process that tried)."""
    first_attempt: int | None
    """Unix ms of the first POST, None if it was never tried (outbox full)."""
    last_attempt: int | None
    """Unix ms of the last POST."""
    last_error: str
    """What the last POST got (`HTTP 500`, `connection refused`, `outbox full ...`)."""


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the exclusive lock of `directory`'s dead-letter file."""
    with open(directory / LOCK_NAME, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def append_dead_letter(directory: Path, letter: DeadLetter) -> None:
    """Append `letter` to the dead-letter file, fsynced."""
    with locked(directory), open(directory / DEAD_LETTERS_NAME, "ab") as file:
        file.write(encode_line(asdict(letter)))
        file.flush()
        os.fsync(file.fileno())


def read_dead_letters(directory: Path) -> list[DeadLetter]:
    """The dead letters of `directory`, oldest first, each id once (unreadable lines skipped)."""
    path = directory / DEAD_LETTERS_NAME
    if not path.exists():
        return []
    letters: dict[str, DeadLetter] = {}
    with open(path, "rb") as file:
        for line in file:
            letter = parse_letter(line)
            if letter is not None and letter.id not in letters:
                letters[letter.id] = letter
    return list(letters.values())


def parse_letter(line: bytes) -> DeadLetter | None:
    """One line as a DeadLetter, None if it is not one (a torn line from a crash)."""
    try:
        return DeadLetter(**json.loads(line))
    except (ValueError, TypeError):
        return None


def remove_dead_letters(directory: Path, ids: set[str]) -> None:
    """Rewrite the dead-letter file without the lines of `ids` (atomically, under the lock)."""
    path = directory / DEAD_LETTERS_NAME
    with locked(directory):
        if not path.exists():
            return
        kept = bytearray()
        with open(path, "rb") as file:
            for line in file:
                letter = parse_letter(line)
                if letter is None or letter.id not in ids:
                    kept += line if line.endswith(b"\n") else line + b"\n"
        write_atomically(path, bytes(kept))
