"""A small multi-node test harness in the spirit of CometBFT's `test/e2e`.

A testnet is described as data (a `Manifest`: how many validators, genesis
parameters, test faults per node, full nodes, perturbations) and started for real
through the CLI (`marketchain testnet start`, PROTOCOL §11) on free loopback ports.
Perturbations are methods of `Testnet` (`kill`, `stop`, `start`, `restart`,
`add_full_node`) or data given to `Testnet.perturb` (default: the manifest's). Checks
are the e2e ones (harness/testnet_checks.py): heights, every node holding identical
blocks, transactions final everywhere, and conservation of the money supply. Waiting,
pid checks, log tails, ports, config edits and HTTP come from the one harness
(tests/e2e/harness/) that single-node tests use too; its reads honour 429
`Retry-After`.

Faults beyond crashes (tests/e2e/fault_scenarios.py drives them): `pause`/`resume`
(SIGSTOP/SIGCONT), `skew_clock` (a restart with the test-only
`MARKETCHAIN_TEST_CLOCK_SKEW_MS`), and, with `Manifest(network="netns")`, network
cuts: every node then runs in its own Linux network namespace on one bridge
(`NamespaceNetwork`), and `disconnect`/`reconnect`/`partition`/`heal` add and remove
blackhole routes between them. Namespaces need root and iproute2;
`netns_unavailable_reason()` says why they cannot be used, and `start_all` raises
`NetworkUnavailable` with that reason, so that a test can skip.

    with Testnet(tmp_path / "net", Manifest(validators=4)) as net:
        tx_hash = net.transfer("alice", "bob", 5, node=2)
        net.wait_for_tx(tx_hash)                    # final on every running node
        net.kill(3)                                 # SIGKILL
        net.start(3)                                # same home, same ports
        net.wait_identical_blocks()

Waiting is always polling with a generous deadline (`wait_until`): a 2-core machine
runs four or five node processes. Every process the harness starts is stopped when
the `Testnet` is closed, on failure too, and at interpreter exit as a last resort.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from client.testnet import create_testnet
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.harness.config_file import edit_config
from tests.e2e.harness.manifest import Manifest, Perturbation
from tests.e2e.harness.namespaces import (
    NamespaceNetwork,
    NetworkUnavailable,
    netns_unavailable_reason,
)
from tests.e2e.harness.ports import free_base_port, free_port
from tests.e2e.harness.processes import LOG_PROBLEM_MARKERS, file_size, pid_alive, process_state
from tests.e2e.harness.testnet_checks import DEFAULT_TIMEOUT, TestnetChecks, wait_until
from tests.e2e.harness.testnet_node import NodeHandle
from tests.paths import REPO_ROOT

__all__ = [
    "CLOCK_SKEW_VARIABLE", "DEFAULT_TIMEOUT", "FAULT_VARIABLE", "LOG_PROBLEM_MARKERS", "Manifest",
    "NetworkUnavailable", "NodeHandle", "Perturbation", "Testnet", "netns_unavailable_reason", "pid_alive",
    "wait_until",
]

STOP_TIMEOUT = 30.0
"""Time a node has to exit after SIGTERM before it is killed."""

FAULT_VARIABLE = "MARKETCHAIN_TEST_FAULT"
"""Test-only misbehaviour of a node (`equivocate`)."""

CLOCK_SKEW_VARIABLE = "MARKETCHAIN_TEST_CLOCK_SKEW_MS"
"""Test-only offset (ms) added to a node's clock (the consensus driver's wall clock)."""

_LIVE: set[Testnet] = set()
"""Testnets not yet closed: their processes are killed at interpreter exit."""


class Testnet(TestnetChecks):
    """N validators started through the CLI, plus any full nodes added later."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, manifest: Manifest | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.directory = Path(directory)
        """DIR of `marketchain testnet start --home DIR`."""
        self.manifest = manifest or Manifest()
        """What to start."""
        self.timeout = timeout
        """Deadline of every wait."""
        self.nodes: list[NodeHandle] = []
        """Validators first (node0 …), then full nodes in the order added."""
        self.keys: dict[str, KeyPair] = {}
        """The funded dev accounts of DIR/accounts, by name."""
        self.chain_id = ""
        """The chain id, from testnet.json."""
        self.genesis: dict[str, Any] = {}
        """node0's genesis.json."""
        self.network: NamespaceNetwork | None = None
        """The namespaces the nodes run in (`Manifest.network == "netns"`), else None."""

    # --- life cycle -------------------------------------------------------------------

    def start_all(self) -> Testnet:
        """`marketchain testnet start`, then start the nodes with faults; wait until all connect."""
        if self.manifest.network not in ("loopback", "netns"):
            raise ValueError(f"unknown network {self.manifest.network!r}")
        if self.manifest.network == "netns" and (reason := netns_unavailable_reason()) is not None:
            raise NetworkUnavailable(reason)
        _LIVE.add(self)
        if self.manifest.network == "netns":
            self._start_in_namespaces()
        else:
            self._start_with_cli()
        self.chain_id = json.loads((self.directory / "testnet.json").read_text())["chain_id"]
        self.genesis = json.loads((self.directory / "node0" / "genesis.json").read_text())
        for path in sorted((self.directory / "accounts").glob("*.json")):
            document = json.loads(path.read_text())
            self.keys[path.stem] = KeyPair.from_seed(bytes.fromhex(document["secret_seed"]))
            assert self.keys[path.stem].address.hex() == document["address"]
        for index, fault in self.manifest.faults.items():
            self.stop(index)
            self.start(index, env={FAULT_VARIABLE: fault})
        for _ in range(self.manifest.full_nodes):
            self.add_full_node()
        self.wait_connected()
        return self

    def _start_with_cli(self) -> None:
        count = self.manifest.validators
        params = [argument for name, value in self.manifest.params.items()
                  for argument in ("--param", f"{name}={value}")]
        for _ in range(5):
            shutil.rmtree(self.directory, ignore_errors=True)
            base = free_base_port(2 * count)
            completed = subprocess.run(
                [sys.executable, "-m", "cli", "testnet", "start", "--nodes", str(count),
                 "--home", str(self.directory), "--base-port", str(base), *params],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL,
            )
            self._adopt_cli_nodes()
            if completed.returncode == 0:
                return
            self.close()
            if "in use" not in completed.stderr + completed.stdout:
                raise AssertionError(f"testnet start failed:\n{completed.stdout}\n{completed.stderr}")
        raise AssertionError("testnet start kept finding its ports taken")

    def _start_in_namespaces(self) -> None:
        """Homes as `testnet start` writes them, then each node started in its own namespace."""
        count = self.manifest.validators
        shutil.rmtree(self.directory, ignore_errors=True)
        params = Params().with_overrides({name: str(value) for name, value in self.manifest.params.items()})
        create_testnet(self.directory, count, free_base_port(2 * count), params)
        self._adopt_cli_nodes()
        self.network = NamespaceNetwork()
        self.network.create()
        for node in self.nodes:
            node.namespace, node.host = self.network.add_node(node.index)
            node.url = f"http://{node.host}:{node.url.rsplit(':', 1)[1]}"
        path = self.directory / "testnet.json"
        description = json.loads(path.read_text())
        for entry, node in zip(description["nodes"], self.nodes, strict=True):
            peers = [other.peer_address for other in self.nodes if other is not node]
            edit_config(node.home, {"http": {"host": node.host}, "p2p": {"host": node.host, "persistent_peers": peers}})
            entry.update(http=node.url, p2p=f"{node.host}:{node.p2p_port}")
        path.write_text(json.dumps(description, indent=2) + "\n")
        for node in self.nodes:
            self.start(node.index)

    def _adopt_cli_nodes(self) -> None:
        try:
            description = json.loads((self.directory / "testnet.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        self.nodes = [
            NodeHandle(index=index, name=entry["name"], home=Path(entry["home"]), url=entry["http"],
                       p2p_port=int(entry["p2p"].rsplit(":", 1)[1]), validator=True, pid=entry["pid"])
            for index, entry in enumerate(description["nodes"])
        ]

    def _write_pids(self) -> None:
        """Keep testnet.json's pids current, so that `testnet stop/status` see our restarts."""
        path = self.directory / "testnet.json"
        description = json.loads(path.read_text())
        for entry, node in zip(description["nodes"], self.nodes, strict=False):
            entry["pid"] = node.pid if node.running else None
        path.write_text(json.dumps(description, indent=2) + "\n")

    def close(self) -> list[str]:
        """Stop every node the harness knows of: SIGTERM, then SIGKILL stragglers.

        Returns what went wrong with the shutdown (a node that had to be killed, a
        non-zero exit code, no "stopped" line in its log): a clean stop is part of
        the contract (PROTOCOL §11).
        """
        problems = []
        signalled = {}
        for node in self.nodes:
            if node.running:
                signalled[node.name] = file_size(node.log_path)
                if node.paused:
                    os.kill(node.pid, signal.SIGCONT)  # type: ignore[arg-type]
                    node.paused = False
                os.kill(node.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + STOP_TIMEOUT
        for node in self.nodes:
            while node.running and time.monotonic() < deadline:
                time.sleep(0.05)
            if node.running:
                problems.append(f"{node.name} ignored SIGTERM for {STOP_TIMEOUT:.0f} s and was killed")
                os.kill(node.pid, signal.SIGKILL)  # type: ignore[arg-type]
                self._reap(node)
            elif node.name in signalled:
                self._reap(node)
                problems.extend(self._shutdown_problems(node, signalled[node.name]))
            node.pid = None
        if (self.directory / "testnet.json").exists() and self.nodes:
            self._write_pids()
        if self.network is not None:
            problems.extend(self.network.destroy())
            self.network = None
        _LIVE.discard(self)
        return problems

    def _shutdown_problems(self, node: NodeHandle, log_offset: int) -> list[str]:
        problems = []
        code = node.exit_code()
        if code not in (None, 0):
            problems.append(f"{node.name} exited with {code} on SIGTERM")
        with open(node.log_path, "rb") as handle:
            handle.seek(log_offset)
            tail = handle.read().decode(errors="replace")
        if f"node {node.name} stopped" not in tail:
            problems.append(f"{node.name} did not log a clean stop after SIGTERM:\n{tail[-2000:]}")
        return problems

    def __enter__(self) -> Testnet:
        try:
            return self.start_all()
        except BaseException:
            self.close()
            raise

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        problems = self.close()
        if kind is None and problems:
            raise AssertionError("unclean shutdown: " + "; ".join(problems))

    # --- perturbations ----------------------------------------------------------------

    def node(self, index: int) -> NodeHandle:
        """Node `index`."""
        return self.nodes[index]

    def _reap(self, node: NodeHandle) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while node.running:
            if time.monotonic() > deadline:
                raise AssertionError(self.describe(f"{node.name} (pid {node.pid}) does not exit"))
            time.sleep(0.05)
        if node.process is not None:
            node.process.wait()

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (a crash) and wait until it is gone."""
        node = self.nodes[index]
        if node.running:
            os.kill(node.pid, signal.SIGKILL)  # type: ignore[arg-type]
        self._reap(node)
        node.pid = None
        node.paused = False
        self._write_pids()

    def stop(self, index: int) -> None:
        """SIGTERM node `index`, wait for it to exit, and check it stopped cleanly."""
        node = self.nodes[index]
        if node.paused:
            self.resume(index)
        log_offset = file_size(node.log_path)
        was_running = node.running
        if was_running:
            os.kill(node.pid, signal.SIGTERM)  # type: ignore[arg-type]
        self._reap(node)
        problems = self._shutdown_problems(node, log_offset) if was_running else []
        node.pid = None
        self._write_pids()
        if problems:
            raise AssertionError(self.describe("; ".join(problems)))

    def start(self, index: int, env: Mapping[str, str] | None = None) -> None:
        """Start node `index` again on its home and ports; wait until it serves."""
        node = self.nodes[index]
        assert not node.running, f"{node.name} is already running"
        node.env = dict(env or {})
        node.paused = False
        in_namespace = ["ip", "netns", "exec", node.namespace] if node.namespace else []
        with open(node.log_path, "ab") as log_file:
            node.process = subprocess.Popen(
                [*in_namespace, sys.executable, "-m", "cli", "node", "start", "--home", str(node.home)],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **node.env},
            )
        node.pid = node.process.pid
        self._write_pids()
        expected = node.node_id

        def serving() -> bool:
            if not node.running:
                raise AssertionError(self.describe(f"{node.name} exited during start-up"))
            status = node.try_status()
            return status is not None and status.get("node_id") == expected

        wait_until(serving, self.timeout, lambda: self.describe(f"{node.name} serving {node.url}"))

    def restart(self, index: int, env: Mapping[str, str] | None = None) -> None:
        """SIGTERM node `index`, then start it again."""
        self.stop(index)
        self.start(index, env)

    def perturb(self, steps: Iterable[Perturbation] | None = None) -> None:
        """Apply perturbations in order (default: the manifest's)."""
        actions = {"kill": self.kill, "stop": self.stop, "start": self.start, "restart": self.restart,
                   "pause": self.pause, "resume": self.resume, "disconnect": self.disconnect,
                   "reconnect": self.reconnect}
        for step in self.manifest.perturbations if steps is None else steps:
            actions[step.action](step.index)

    def pause(self, index: int) -> None:
        """SIGSTOP node `index`: it neither answers nor sends until `resume`; wait until stopped."""
        node = self.nodes[index]
        assert node.running, f"{node.name} is not running"
        os.kill(node.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        node.paused = True
        wait_until(lambda: process_state(node.pid) in ("T", "t", None), self.timeout,  # type: ignore[arg-type]
                   f"{node.name} stopped by SIGSTOP")

    def resume(self, index: int) -> None:
        """SIGCONT node `index` after `pause`."""
        node = self.nodes[index]
        if node.running:
            os.kill(node.pid, signal.SIGCONT)  # type: ignore[arg-type]
        node.paused = False

    def skew_clock(self, index: int, skew_ms: int) -> None:
        """Restart node `index` (SIGTERM) with its clock `skew_ms` off (0: the true clock again).

        Other test faults of the node (`MARKETCHAIN_TEST_FAULT`) are kept."""
        env = {name: value for name, value in self.nodes[index].env.items() if name != CLOCK_SKEW_VARIABLE}
        if skew_ms:
            env[CLOCK_SKEW_VARIABLE] = str(skew_ms)
        self.restart(index, env)

    def relaunch(self, index: int) -> None:
        """Start node `index` again with the environment (test faults, clock skew) of its last start."""
        self.start(index, self.nodes[index].env)

    # --- network cuts (netns testnets) ----------------------------------------------

    def _require_network(self) -> NamespaceNetwork:
        if self.network is None:
            raise NetworkUnavailable("network cuts need Manifest(network='netns')")
        return self.network

    def disconnect(self, index: int) -> None:
        """Cut node `index` off from every other node (its API stays reachable)."""
        network = self._require_network()
        for other in self.nodes:
            if other.index != index:
                network.cut(index, other.index)

    def reconnect(self, index: int) -> None:
        """Undo every cut of node `index`."""
        network = self._require_network()
        for pair in sorted(network.cuts):
            if index in pair:
                network.mend(*pair)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link between nodes of different groups; a node in no group keeps all its links."""
        network = self._require_network()
        sides = [list(group) for group in groups]
        for number, side in enumerate(sides):
            for other_side in sides[number + 1:]:
                for first in side:
                    for second in other_side:
                        network.cut(first, second)

    def heal(self) -> None:
        """Undo every cut."""
        network = self._require_network()
        for pair in sorted(network.cuts):
            network.mend(*pair)

    def add_full_node(self, peers: Iterable[int] | None = None) -> NodeHandle:
        """`marketchain init` a non-validator from node0's genesis, peer it, start it."""
        index = len(self.nodes)
        name = f"full{index - self.manifest.validators}"
        home = self.directory / name
        http_port, p2p_port = free_port(), free_port()
        completed = subprocess.run(
            [sys.executable, "-m", "cli", "init", "--home", str(home), "--moniker", name,
             "--genesis", str(self.directory / "node0" / "genesis.json"),
             "--http-port", str(http_port), "--p2p-port", str(p2p_port)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL,
        )
        assert completed.returncode == 0, f"init failed:\n{completed.stdout}\n{completed.stderr}"
        chosen = range(self.manifest.validators) if peers is None else peers
        peer_addresses = [self.nodes[i].peer_address for i in chosen]
        node = NodeHandle(index=index, name=name, home=home, url=f"http://127.0.0.1:{http_port}",
                          p2p_port=p2p_port, validator=False)
        if self.network is not None:
            node.namespace, node.host = self.network.add_node(index)
            node.url = f"http://{node.host}:{http_port}"
            edit_config(home, {"http": {"host": node.host},
                               "p2p": {"host": node.host, "persistent_peers": peer_addresses}})
        else:
            edit_config(home, {"p2p": {"persistent_peers": peer_addresses}})
        self.nodes.append(node)
        self.start(index)
        return node


def _kill_leftovers() -> None:
    for testnet in list(_LIVE):
        for node in testnet.nodes:
            if node.running:
                try:
                    os.kill(node.pid, signal.SIGKILL)  # type: ignore[arg-type]
                except ProcessLookupError:
                    pass
    for testnet in list(_LIVE):
        for node in testnet.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass


atexit.register(_kill_leftovers)
