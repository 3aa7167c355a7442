"""Test crash points of the merchant agent (docs/faults.md): with
`MARKETCHAIN_TEST_AGENT_CRASH=<point>[:<n>]` the agent kills itself with SIGKILL the n-th time
(default the first) it reaches `<point>`, once per state directory (a marker file says it
happened, so the restarted agent runs through). The points of a digital delivery:

- `after_reserve`: the codes are reserved (journal fsynced), nothing signed yet;
- `after_submit`: the `order_deliver` is submitted to the node, not yet final;
- `after_final`: the transaction is final, the codes not yet marked used.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

CRASH_VARIABLE = "MARKETCHAIN_TEST_AGENT_CRASH"
"""The environment variable naming the crash point."""

CRASH_POINTS = ("after_reserve", "after_submit", "after_final")
"""The points the agent can crash at."""

MARKER_PREFIX = "crashed-"
"""`<state_dir>/crashed-<point>` exists once the agent crashed there."""


class CrashPoints:
    """Counts the points reached and kills the process at the configured one."""

    def __init__(self, state_dir: Path, environ: Mapping[str, str]) -> None:
        """Read `MARKETCHAIN_TEST_AGENT_CRASH` from `environ`; ValueError if it names no known point."""
        self.state_dir = state_dir
        """Where the marker file goes."""
        self.point: str | None = None
        """The point to crash at, if any."""
        self.nth = 1
        """Crash the n-th time the point is reached."""
        self.reached = 0
        """Times the point was reached so far."""
        value = environ.get(CRASH_VARIABLE, "")
        if value:
            point, _, count = value.partition(":")
            if point not in CRASH_POINTS or (count and not count.isdigit()):
                raise ValueError(f"{CRASH_VARIABLE}={value!r}: use one of {', '.join(CRASH_POINTS)}, optionally :N")
            self.point, self.nth = point, int(count or 1)

    def reach(self, point: str) -> None:
        """The agent is at `point`: SIGKILL it if this is the configured point and time, once."""
        if point != self.point:
            return
        self.reached += 1
        marker = self.state_dir / (MARKER_PREFIX + point)
        if self.reached != self.nth or marker.exists():
            return
        descriptor = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
        os.fsync(descriptor)
        os.close(descriptor)
        os.kill(os.getpid(), signal.SIGKILL)
