"""A one-validator testnet started with `python -m cli testnet start`, and the CLI run as a
real process against it: the fixture and helpers of the CLI's end-to-end tests
(test_cli_orders.py, test_cli_after_sales.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.node_process import free_base_port
from tests.paths import REPO_ROOT

DEADLINE_SECONDS = 90
"""Deadline of one CLI run, in seconds."""

ACCOUNTS = ("faucet", "alice", "carol", "dave", "erin")
"""The accounts whose key files `testnet start` writes in the testnet's `accounts/` folder."""

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


def cli_testnet_fixture() -> Callable[..., Iterator[tuple[Path, str]]]:
    """The fixture `testnet`: a one-validator testnet running in the test's temporary
    directory, `(directory, node URL)`; a test module takes it as `testnet = cli_testnet_fixture()`."""

    @pytest.fixture
    def testnet(tmp_path: Path) -> Iterator[tuple[Path, str]]:
        with one_validator_testnet(tmp_path / "net") as running:
            yield running

    return testnet


def account_keys(net: Path) -> dict[str, str]:
    """The key file of each of `ACCOUNTS` in the testnet directory `net`, by name."""
    return {name: str(net / "accounts" / f"{name}.json") for name in ACCOUNTS}
