"""`marketchain devnet` as a real background process for the explorer's browser tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.node_process import REPO_ROOT, free_base_port

STARTUP_SECONDS = 120
"""How long a one-node devnet may take to seed its demo data on a loaded machine."""


@dataclass
class StartedDevnet:
    """A devnet that printed "Press Ctrl-C": its node serves and its demo data is final."""

    url: str
    """The node's HTTP base URL (explorer and API)."""
    home: Path
    """The devnet's home folder."""
    process: subprocess.Popen[str]
    """The `marketchain devnet` process."""
    output: str
    """What it printed up to "Press Ctrl-C"."""

    def demo_objects(self) -> list[tuple[str, str, str]]:
        """The (kind, name, id) of every shop, listing and order it printed."""
        return [(kind, name.strip(), identifier) for kind, identifier, name
                in re.findall(r"^  (shop|listing|order) +([0-9a-f]{64})  (.+)$", self.output, re.M)]


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def running_devnet(home: Path, environment: dict[str, str] | None = None) -> Iterator[StartedDevnet]:
    """`marketchain devnet --nodes 1` in `home` (with `environment` added), until it has
    seeded its demo data; stopped with SIGINT (as Ctrl-C) when the block ends."""
    base = free_base_port(4)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "devnet", "--home", str(home), "--base-port", str(base), "--nodes", "1"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, **(environment or {})},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Press Ctrl-C" in text, f"the devnet did not start:\n{text}"
        yield StartedDevnet(f"http://127.0.0.1:{base + 1}", home, process, text)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
