"""Durable writes for the merchant agent's state directory (its files are mode 0600: they may say
what a shop sold): a whole file replaced atomically (client/durable_files.py) and an append-only journal of JSON
lines, each fsynced before the call returns. A kill -9 at any point leaves either the old or
the new file, and a journal whose last line may be cut short (its reader skips it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from client.durable_files import FILE_MODE, write_atomically

DIRECTORY_MODE = 0o700
"""Permissions of the directories the agent creates."""


def ensure_directory(directory: Path) -> Path:
    """`directory`, created with mode 0700 (and its parents) if missing."""
    directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    return directory


def write_json_atomically(path: Path, document: Any, overwrite: bool = True) -> None:
    """`write_atomically` of `document` as JSON."""
    write_atomically(path, (json.dumps(document, sort_keys=True) + "\n").encode(), overwrite)


class Journal:
    """An append-only file of JSON lines, each made durable (fsync) before `append` returns."""

    def __init__(self, path: Path) -> None:
        """The journal at `path` (created on the first append). A last line cut short by a crash
        is cut off the file here, so that the next append starts on a line of its own."""
        self.path = path
        """The journal file."""
        self._truncate_torn_tail()

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every complete, well-formed entry, oldest first (a malformed line is skipped)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    return
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield entry

    def append(self, entry: dict[str, Any]) -> None:
        """Add `entry` durably."""
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
