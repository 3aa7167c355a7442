"""Progress for the CLI: rich bars on a terminal's stderr, plain lines otherwise, nothing with --quiet.

Bars go to stderr so that stdout stays the command's result (a table or `--json`),
and only when stderr is a terminal: a log file or a pipe gets one line per step.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

SYNC_POLL_S = 0.5
"""How often `watch_sync` asks the node for its height."""
SYNC_LINE_EVERY_S = 5.0
"""Without a terminal, `watch_sync` prints a line at most this often."""


def bars_enabled(quiet: bool, stream: TextIO | None = None) -> bool:
    """True when progress bars may be drawn: not --quiet, and stderr is a terminal."""
    stream = stream if stream is not None else sys.stderr
    return not quiet and bool(getattr(stream, "isatty", lambda: False)())


def _progress(stream: TextIO | None) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream if stream is not None else sys.stderr),
        transient=False,
    )


class Steps:
    """A counted task (e.g. nodes coming up): a bar on a terminal, else one line per step."""

    def __init__(self, description: str, total: int, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.description = description
        """What is being counted, e.g. `nodes serving`."""
        self.total = total
        """Steps expected."""
        self.quiet = quiet
        """Print nothing at all."""
        self._stream = stream
        self._bar = _progress(stream) if bars_enabled(quiet, stream) else None
        self._task: TaskID | None = None

    def __enter__(self) -> Steps:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, note: str) -> None:
        """One more step done; `note` says which (shown as a line when there is no bar)."""
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task)
            self._bar.console.print(note, highlight=False)
        elif not self.quiet:
            print(note, file=self._stream if self._stream is not None else sys.stderr, flush=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()


def sync_summary(status: dict[str, Any]) -> dict[str, Any]:
    """Sync progress from a node's `/status`: height, target, blocks behind, percent done, peers."""
    sync = status.get("sync") or {}
    height = int(sync.get("height", status.get("height", 0)))
    target = max(int(sync.get("target", 0)), height)
    state_sync = {"state_sync": status.get("state_sync") or {}} if status.get("syncing") == "state" else {}
    return {
        "height": height,
        "target": target,
        "behind": target - height,
        "percent": round(100.0 * height / target, 1) if target else 100.0,
        "syncing": bool(status.get("syncing", sync.get("syncing", False))),
        "peers": status.get("peers"),
        **state_sync,  # only while the node restores a snapshot (R39)
    }


def describe_sync(summary: dict[str, Any]) -> str:
    """`synced at 120`, `syncing 40 of 120 (33.3%)`, or `state sync: restoring snapshot of height
    5000: 12/64 chunks` while the node joins by state sync (R39)."""
    state_sync = summary.get("state_sync")
    if state_sync is not None:
        if state_sync.get("height") is None:
            return "state sync: looking for a snapshot"
        return f"state sync: restoring snapshot of height {state_sync['height']}: {state_sync.get('chunks')} chunks"
    if summary["syncing"]:
        return f"syncing {summary['height']} of {summary['target']} ({summary['percent']}%)"
    return f"synced at {summary['height']}"


def watch_sync(fetch_status: Callable[[], dict[str, Any]], quiet: bool = False, timeout_s: float | None = None,
               stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll a node until it has caught up with its peers, showing progress; return the last summary.

    Raises TimeoutError if it is still behind after `timeout_s`.
    """
    output = stream if stream is not None else sys.stderr
    bar = _progress(stream) if bars_enabled(quiet, stream) else None
    task: TaskID | None = None
    started = clock()
    last_line = float("-inf")
    try:
        if bar is not None:
            bar.start()
        while True:
            summary = sync_summary(fetch_status())
            if bar is not None:
                if task is None:
                    task = bar.add_task("syncing blocks", total=summary["target"] or 1)
                bar.update(task, total=max(summary["target"], 1), completed=summary["height"])
            elif not quiet and (clock() - last_line >= SYNC_LINE_EVERY_S or not summary["syncing"]):
                print(describe_sync(summary), file=output, flush=True)
                last_line = clock()
            if not summary["syncing"]:
                return summary
            if timeout_s is not None and clock() - started > timeout_s:
                raise TimeoutError(f"still {describe_sync(summary)} after {timeout_s:.0f} s")
            sleep(SYNC_POLL_S)
    finally:
        if bar is not None:
            bar.stop()
