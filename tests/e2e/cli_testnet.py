"""A one-validator testnet started with `python -m cli testnet start`, and the CLI run as a
real process against it: the fixture and helpers of the CLI's end-to-end tests
(test_cli_orders.py, test_cli_after_sales.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.node_process import free_base_port
from tests.paths import REPO_ROOT

DEADLINE_SECONDS = 90
"""Deadline of one CLI run, in seconds."""

ADDRESS = "Erin Example, 12 Harbour Road, Qingdao 266000"
"""The buyer's shipping address, sealed on chain (R13)."""


def cli(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `python -m cli ARGUMENTS`; with `check`, assert it exited 0."""
    completed = subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert completed.returncode == 0, f"{arguments}:\n{completed.stdout}\n{completed.stderr}"
    return completed


def cli_json(*arguments: str) -> Any:
    """The parsed `--json` output of a CLI run."""
    return json.loads(cli(*arguments, "--json").stdout)


def http(url: str) -> bytes:
    """The raw body of a GET."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@contextmanager
def one_validator_testnet(net: Path) -> Iterator[tuple[Path, str]]:
    """A one-validator testnet started in `net`: `(net, node URL)`; stopped on exit."""
    cli("testnet", "start", "--nodes", "1", "--home", str(net), "--base-port", str(free_base_port(2)))
    try:
        yield net, json.loads((net / "testnet.json").read_text())["nodes"][0]["http"]
    finally:
        cli("testnet", "stop", "--home", str(net))
