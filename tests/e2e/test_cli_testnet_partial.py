"""`marketchain testnet start` on an existing testnet (issue 12, point 6): a different
`--nodes` is refused instead of silently starting the old number, and a testnet with one dead
node is completed without stopping the others."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.cli_testnet import cli
from tests.e2e.node_process import free_base_port


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
