"""Node processes seen from outside: is a pid alive, its state letter, the tail of its log."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

LOG_TAIL_LINES = 60
"""Lines of node.log quoted in a failure message."""

LOG_PROBLEM_MARKERS = ("Traceback", " ERROR ", "consensus job failed")
"""node.log text that reveals a bug rather than a perturbation."""

LOG_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
"""The first line of a plain-format log record (the rest are its traceback lines)."""


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, T, Z, …), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = process_state(pid)
    return state != "Z"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


def log_problems(path: Path, markers: Iterable[str] = LOG_PROBLEM_MARKERS) -> list[str]:
    """The records of a node.log (a line and its traceback lines) that hold one of `markers`."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    records: list[list[str]] = []
    for line in lines:
        if LOG_RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    texts = ["\n".join(record) for record in records]
    return [text for text in texts if any(marker in text for marker in markers)]


def file_size(path: Path) -> int:
    """The size of a file in bytes, 0 when it does not exist (a log offset)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def child_pids(pid: int, command_marker: bytes = b"") -> list[int]:
    """The processes whose parent is `pid` and whose command line contains `command_marker`
    (e.g. `b"spawn_main"` for multiprocessing workers), found by scanning /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and command_marker in command:
            children.append(int(entry.name))
    return children
