"""State-sync progress for the operator: a log line every few seconds, or, when stderr is a
terminal, a progress bar instead (never in `json` log mode: machines read those lines).

The bar is one line redrawn in place with a carriage return: `[#####.....] 120/256 chunks
(47 %) of height 50000, 3.1 chunks/s`. Without a terminal only the log lines are written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TextIO

from node.logging_setup import log_fields

log = logging.getLogger("marketchain.statesync")

LOG_INTERVAL_S = 5.0
"""Seconds between two progress log lines."""
BAR_INTERVAL_S = 0.5
"""Seconds between two redraws of the terminal bar."""
BAR_WIDTH = 30
"""Characters of the bar itself."""


def progress_line(progress: dict[str, Any], rate: float | None) -> str:
    """The text of one progress report (`rate` None: not measured yet)."""
    done, total = progress.get("chunks_done", 0), progress.get("chunks_total", 0)
    height = progress.get("height")
    if not total:
        return f"state sync: {progress.get('phase', 'discovering')} (offers from {progress.get('offering_peers', 0)} peers)"
    percent = 100 * done // total
    speed = "" if rate is None else f", {rate:.1f} chunks/s"
    return f"state sync: {done}/{total} chunks ({percent} %) of height {height}{speed}"


def progress_bar(progress: dict[str, Any], rate: float | None) -> str:
    """The terminal bar: `[####......] ` followed by the progress line."""
    done, total = progress.get("chunks_done", 0), progress.get("chunks_total", 0)
    filled = BAR_WIDTH * done // total if total else 0
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] " + progress_line(progress, rate)


class ProgressReporter:
    """Reports a state sync's `progress()` until stopped."""

    def __init__(self, progress: Callable[[], dict[str, Any]], stream: TextIO | None, bar: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.progress = progress
        """The state sync's `progress()`."""
        self.stream = stream
        """Where the bar is drawn (stderr)."""
        self.bar = bar and stream is not None
        """Draw a bar (a terminal, plain log format)."""
        self.clock = clock
        """Monotonic seconds."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reporting on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop reporting (and end the bar's line)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.bar and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()

    async def _run(self) -> None:
        started = last_log = self.clock()
        first_done: int | None = None
        while True:
            await asyncio.sleep(BAR_INTERVAL_S if self.bar else LOG_INTERVAL_S)
            progress = self.progress()
            done = progress.get("chunks_done", 0)
            rate: float | None = None  # chunks/s since the first report that knew the total
            if first_done is None and progress.get("chunks_total"):
                first_done, started = done, self.clock()
            elif first_done is not None:
                rate = (done - first_done) / max(self.clock() - started, 1e-6)
            if self.bar and self.stream is not None:
                self.stream.write("\r" + progress_bar(progress, rate))
                self.stream.flush()
            if self.clock() - last_log >= LOG_INTERVAL_S - 1e-6:
                last_log = self.clock()
                if not self.bar:
                    log.info("%s", progress_line(progress, rate), extra=log_fields(
                        event="statesync_progress", height=progress.get("height"), chunks_done=done,
                        chunks_total=progress.get("chunks_total", 0),
                        chunks_per_second=None if rate is None else round(rate, 1)))
