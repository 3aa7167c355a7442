"""kill -9 of a node joining by state sync, at every point of the restore (PROTOCOL R39; issue 15).

One network of two validators that write snapshots and a market load whose snapshot has
several chunks. A joiner is started again and again with the test-only crash point
`MARKETCHAIN_TEST_RESTORE_CRASH` (node/state_restore.py kills its own process with SIGKILL
there): `begin` (restore marker written), `wipe` (first wipe batch), `chunk:1` (after its
second chunk batch), `chunk:<k>` (after more), `before_finish` and `after_finish`; between
two of them, a start with state sync disabled while the restore is pending is refused with
a clear message. Each restart resumes or starts over, never a half state that looks whole;
the last, without a crash point, completes and agrees with the network. A second joiner is
killed from outside (SIGKILL) at a random moment while its `/status` says it is state
syncing, and completes after a restart (before that, a SIGTERM while it discovers
snapshots stops it cleanly).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness.config_file import edit_config
from tests.e2e.harness.processes import file_size
from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.harness.waiting import wait_until
from tests.e2e.state_sync_network import (
    RESTORE_CRASH_VARIABLE,
    MarketNetwork,
    StateSyncTestnet,
)
from tests.e2e.testnet_harness import Manifest

pytestmark = pytest.mark.integration

DISABLED = {"MARKETCHAIN_STATESYNC_ENABLE": "false"}
"""The environment of a start with state sync disabled."""


Network = MarketNetwork
"""This module's shared network."""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """Two validators, a market load, a snapshot of at least four chunks on both."""
    with StateSyncTestnet(tmp_path_factory.mktemp("crash") / "net", Manifest(validators=2)) as net:
        load, head, snapshot = net.small_market("crash", per_merchant=45)
        assert snapshot["chunks"] >= 4, snapshot
        yield Network(net, load, head, snapshot["height"], snapshot["chunks"])


def _log_since(node: NodeHandle, offset: int) -> str:
    with open(node.log_path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def _crash_at(network: Network, joiner: NodeHandle, point: str) -> None:
    """Start the joiner with crash point `point`; it must kill itself there (SIGKILL)."""
    net = network.net
    offset = file_size(joiner.log_path)
    net.launch(joiner.index, {RESTORE_CRASH_VARIABLE: point})
    code = net.wait_exit(joiner.index)
    assert code == -signal.SIGKILL, (
        f"{joiner.name} with crash point {point} exited with {code}, not by SIGKILL:\n{_log_since(joiner, offset)}")


def _assert_agrees(network: Network, joiner: NodeHandle) -> None:
    net = network.net
    net.wait_state_synced(joiner.index, network.head)
    net.assert_pruned_below(joiner, network.base)
    net.assert_blocks_agree(joiner, [net.node(0)], network.base + 1, network.head)
    height = net.assert_same_objects(joiner, net.node(1), network.load, every=3)
    net.assert_proofs_verify(joiner, net.node(0), network.load, height)
    problems = net.log_problems()
    assert not problems, f"tracebacks or errors in node logs: {problems}"


def test_restore_killed_at_each_point_resumes_and_completes(network: Network) -> None:
    net, chunks = network.net, network.chunks
    joiner = net.add_joiner("joiner_points", [0, 1])
    later = max(0, (chunks - 2) // 2 - 1)  # a second chunk crash that leaves chunks for before_finish
    for point in ("begin", "wipe", "chunk:1"):
        _crash_at(network, joiner, point)

    # A restore is pending: a start without state sync must refuse, not serve a partial state.
    offset = file_size(joiner.log_path)
    net.launch(joiner.index, DISABLED)
    code = net.wait_exit(joiner.index, timeout=60)
    said = _log_since(joiner, offset)
    assert code not in (0, -signal.SIGKILL), f"exit {code}:\n{said}"
    squashed = said.replace(" ", "").replace("_", "").lower()
    assert "interrupted" in said.lower() and "statesync" in squashed and "enable" in squashed, said

    for point in (f"chunk:{later}", "before_finish", "after_finish"):
        _crash_at(network, joiner, point)
    net.start(joiner.index)
    _assert_agrees(network, joiner)
    assert net.metric(joiner, "marketchain_statesync_bad_chunks_total") in (None, 0)
    net.stop(joiner.index)


def test_joiner_killed_from_outside_while_state_syncing_completes_after_a_restart(network: Network) -> None:
    net = network.net
    joiner = net.add_joiner("joiner_killed", [0, 1], options={"chunk_fetchers": 1})
    # A third persistent peer where nothing listens: discovery cannot end early (every
    # configured peer answered) and lasts its whole discovery_time_s, the window of the SIGTERM.
    peers = [net.node(0).peer_address, net.node(1).peer_address, "00" * 32 + "@127.0.0.1:9"]
    edit_config(joiner.home, {"p2p": {"persistent_peers": peers}})

    # First a SIGTERM while it discovers snapshots: a clean stop (`Testnet.stop` checks it).
    net.start(joiner.index)
    wait_until(lambda: (joiner.try_status() or {}).get("syncing") == "state", net.timeout,
               lambda: net.describe(f"{joiner.name} state syncing"))
    net.stop(joiner.index)

    net.launch(joiner.index)

    def restoring() -> bool:
        """True once `/status` shows state sync with its chunks chosen (`k/n`, n > 0)."""
        if not joiner.running:
            raise AssertionError(net.describe(f"{joiner.name} exited before state sync"))
        status = joiner.try_status()
        if status is None or status.get("syncing") != "state":
            return status is not None and status["height"] > 0  # missed it: already done
        done, total = (int(part) for part in status["chunks"].split("/"))
        return total > 0

    # Polled often: the restore of a few chunks takes well under a second.
    wait_until(restoring, net.timeout, lambda: net.describe(f"{joiner.name} restoring"), interval=0.01,
               max_interval=0.01)
    time.sleep(random.uniform(0.0, 0.3))  # the random moment of the crash, within the restore
    os.kill(joiner.pid, signal.SIGKILL)  # type: ignore[arg-type]
    assert net.wait_exit(joiner.index) == -signal.SIGKILL
    net.start(joiner.index)
    _assert_agrees(network, joiner)
    net.stop(joiner.index)
