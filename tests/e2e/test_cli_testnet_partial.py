"""`marketchain testnet start` on an existing testnet (issue 12, point 6): a different
`--nodes` is refused instead of silently starting the old number, and a testnet with one dead
node is completed without stopping the others; and a transaction waited for survives a
restart of every node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.cli_testnet import cli
from tests.e2e.node_process import free_base_port
from tests.paths import REPO_ROOT


@pytest.mark.integration
def test_a_dead_node_is_restarted_alone_and_a_different_node_count_is_refused(tmp_path: Path) -> None:
    net = tmp_path / "net"
    cli("testnet", "start", "--nodes", "2", "--home", str(net), "--base-port", str(free_base_port(4)), "-q")
    try:
        first = json.loads((net / "testnet.json").read_text())["nodes"]
        wrong = cli("testnet", "start", "--nodes", "4", "--home", str(net), check=False)
        assert wrong.returncode == 1 and "holds a 2-node testnet: --nodes 4 does not apply" in wrong.stderr
        running = cli("testnet", "start", "--home", str(net), check=False)
        assert running.returncode == 1 and "already running" in running.stderr
        os.kill(first[1]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = json.loads(cli("testnet", "status", "--home", str(net), "--json").stdout)
            if not rows[1]["running"]:
                break
            time.sleep(0.2)
        cli("testnet", "start", "--home", str(net), "-q")
        again = json.loads((net / "testnet.json").read_text())["nodes"]
        assert again[0]["pid"] == first[0]["pid"] and again[1]["pid"] != first[1]["pid"]
        rows = json.loads(cli("testnet", "status", "--home", str(net), "--json").stdout)
        assert [row["running"] for row in rows] == [True, True]
    finally:
        cli("testnet", "stop", "--home", str(net))


@pytest.mark.integration
def test_a_waiting_transfer_survives_a_restart_of_every_node(tmp_path: Path) -> None:
    """Issue 12 point 4, the client's half: the node forgets its mempool in a restart, and the
    waiting CLI sends the transaction again until it is final."""
    net = tmp_path / "net"
    cli("testnet", "start", "--nodes", "2", "--home", str(net), "--base-port", str(free_base_port(4)), "-q")
    try:
        nodes = json.loads((net / "testnet.json").read_text())["nodes"]
        os.kill(nodes[1]["pid"], signal.SIGKILL)  # 1 of 2 validators: no quorum, nothing becomes final
        waiting = subprocess.Popen(
            [sys.executable, "-m", "cli", "tx", "transfer", "--key", str(net / "accounts" / "alice.json"),
             "--to", str(net / "accounts" / "bob.json"), "--amount", "3MKT", "--node", nodes[0]["http"],
             "--timeout", "240", "--json"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while json.loads(cli("query", "status", "--node", nodes[0]["http"], "--json").stdout)["mempool_size"] < 1:
            assert time.monotonic() < deadline and waiting.poll() is None, waiting.communicate()
            time.sleep(0.2)
        cli("testnet", "stop", "--home", str(net))
        cli("testnet", "start", "--home", str(net), "-q")
        stdout, stderr = waiting.communicate(timeout=240)
        assert waiting.returncode == 0, stderr
        receipt = json.loads(stdout)
        assert receipt["status"] == "committed" and receipt["result"]["ok"] is True
    finally:
        cli("testnet", "stop", "--home", str(net))
