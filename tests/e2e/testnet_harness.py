"""A small multi-node test harness in the spirit of CometBFT's `test/e2e`.

A testnet is described as data (a `Manifest`: how many validators, genesis
parameters, test faults per node) and started for real through the CLI
(`marketchain testnet start`, PROTOCOL §11) on free loopback ports. Perturbations
are methods of `Testnet` (`kill`, `stop`, `start`, `restart`, `add_full_node`) or
data given to `Testnet.perturb`. Checks are the e2e ones: heights, every node
holding identical blocks, transactions final everywhere, and conservation of the
money supply.

Faults beyond crashes (tests/fault_scenarios.py drives them): `pause`/`resume`
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
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from client.testnet import create_testnet
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import edit_config, free_base_port, free_port, http_get, http_post
from tests.e2e.node_process import wait_until as poll_until

REPO_ROOT = Path(__file__).resolve().parent.parent
"""`python -m cli` runs from here."""

DEFAULT_TIMEOUT = 90.0
"""Deadline of every wait: generous, the machine is small and shared."""

STOP_TIMEOUT = 30.0
"""Time a node has to exit after SIGTERM before it is killed."""

LOG_TAIL_LINES = 25
"""Lines of each node.log quoted in a failure message."""

LOG_PROBLEM_MARKERS = ("Traceback", " ERROR ", "consensus job failed")
"""node.log lines that reveal a bug rather than a perturbation."""

FAULT_VARIABLE = "MARKETCHAIN_TEST_FAULT"
"""Test-only misbehaviour of a node (`equivocate`)."""

CLOCK_SKEW_VARIABLE = "MARKETCHAIN_TEST_CLOCK_SKEW_MS"
"""Test-only offset (ms) added to a node's clock (node/consensus_driver.py `wall_clock_ms`)."""

T = TypeVar("T")

_LIVE: set[Testnet] = set()
"""Testnets not yet closed: their processes are killed at interpreter exit."""

_NETWORKS: set[NamespaceNetwork] = set()
"""Namespace networks not yet destroyed: removed at interpreter exit."""


# --- waiting ------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    message: str | Callable[[], str] = "condition",
    interval: float = 0.1,
) -> T:
    """`node_process.wait_until` with the harness's slower polling (0.1 s growing to
    0.5 s: several nodes share two cores). The only sleeps of the harness are these polls."""
    return poll_until(predicate, timeout, message, interval, max_interval=0.5)


def _pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, T, Z, …), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _log_size(node: NodeHandle) -> int:
    try:
        return node.log_path.stat().st_size
    except FileNotFoundError:
        return 0


# --- the description ----------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """A testnet as data."""

    validators: int = 4
    """Validator processes started by `marketchain testnet start`."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Genesis parameters (`--param NAME=VALUE`)."""
    faults: Mapping[int, str] = field(default_factory=dict)
    """Node index → `MARKETCHAIN_TEST_FAULT` value: that node is restarted with the fault on."""
    network: str = "loopback"
    """`loopback` (every node on 127.0.0.1, started by the CLI) or `netns` (each node in
    its own network namespace, so that links can be cut; needs root)."""


@dataclass(frozen=True)
class Perturbation:
    """One step of a scenario: `kill`, `stop`, `start`, `restart`, `pause`, `resume`,
    `disconnect` or `reconnect` node `index`."""

    action: str
    """`kill` (SIGKILL), `stop` (SIGTERM), `start`, `restart` (stop, then start),
    `pause` (SIGSTOP), `resume` (SIGCONT), `disconnect` / `reconnect` (netns only)."""
    index: int
    """The node it applies to."""


# --- one node -----------------------------------------------------------------------


@dataclass
class NodeHandle:
    """One node of the testnet: where it lives and which process runs it."""

    index: int
    """Its position: nodeI for validators, then full nodes."""
    name: str
    """node0, node1, … or full0, full1, …"""
    home: Path
    """Its home directory (config, keys, genesis, data, node.log)."""
    url: str
    """Base URL of its HTTP API."""
    p2p_port: int
    """Its P2P listen port."""
    validator: bool
    """True for a genesis validator, False for a full node."""
    pid: int | None = None
    """Its process id while it runs."""
    process: subprocess.Popen[bytes] | None = None
    """The process, when the harness started it itself (restarts, full nodes)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of its last start (test faults)."""
    host: str = "127.0.0.1"
    """Address its HTTP API and P2P listener bind (its namespace's address under netns)."""
    namespace: str | None = None
    """The network namespace it runs in (netns testnets), else None."""
    paused: bool = False
    """True between `Testnet.pause` (SIGSTOP) and `resume` (SIGCONT)."""

    @property
    def log_path(self) -> Path:
        """stdout and stderr of the node, appended across restarts."""
        return self.home / "node.log"

    @property
    def node_id(self) -> str:
        """Its node key address (hex), as `/status` and persistent peers name it."""
        return json.loads((self.home / "node_key.json").read_text())["address"]

    @property
    def validator_address(self) -> str:
        """The address of its validator key (hex)."""
        return json.loads((self.home / "validator_key.json").read_text())["address"]

    @property
    def peer_address(self) -> str:
        """`node_id@host:p2p_port`, for another node's persistent peers."""
        return f"{self.node_id}@{self.host}:{self.p2p_port}"

    @property
    def running(self) -> bool:
        """True while its process lives."""
        if self.pid is None:
            return False
        if self.process is not None:
            return self.process.poll() is None
        return _pid_alive(self.pid)

    @property
    def available(self) -> bool:
        """True while its process lives and is not paused: it can answer requests."""
        return self.running and not self.paused

    def exit_code(self) -> int | None:
        """The exit code, when the harness started the process and it has exited."""
        return self.process.poll() if self.process is not None else None

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        """GET a path of its API; raises OSError when nothing answers."""
        return http_get(self.url + path, timeout=timeout)

    def get_ok(self, path: str) -> Any:
        """GET a path that must answer 200."""
        status, body = self.get(path)
        if status != 200:
            raise AssertionError(f"{self.name}: GET {path} answered {status}: {body!r}")
        return body

    def status(self) -> dict[str, Any]:
        """`GET /status`."""
        return self.get_ok("/status")

    def try_status(self) -> dict[str, Any] | None:
        """`GET /status`, or None when the node does not answer."""
        try:
            status, body = self.get("/status", timeout=5.0)
        except OSError:
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def height(self) -> int:
        """Its latest final height."""
        return self.status()["height"]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of node.log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no node.log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Lines of node.log that reveal a bug (tracebacks, ERROR)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if any(marker in line for marker in LOG_PROBLEM_MARKERS)]


# --- network namespaces -------------------------------------------------------------


class NetworkUnavailable(RuntimeError):
    """Network namespaces cannot be used on this machine (the message says why)."""


_NETNS_PROBE: list[str | None] = []
"""The cached answer of `netns_unavailable_reason`."""


def _ip(*arguments: str) -> str:
    """Run `ip ARGUMENTS…`; its stdout. Raises RuntimeError with ip's message on failure."""
    completed = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=20,
                               stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)}: {completed.stderr.strip() or completed.returncode}")
    return completed.stdout


def netns_unavailable_reason() -> str | None:
    """None when nodes can run in network namespaces with links cut between them; else why not."""
    if not _NETNS_PROBE:
        _NETNS_PROBE.append(_probe_netns())
    return _NETNS_PROBE[0]


def _probe_netns() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run as root, or the partition scenarios skip)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    name = f"mcprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
        _ip("-n", name, "link", "add", "br0", "type", "bridge")
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "route", "add", "blackhole", "10.255.255.1/32")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        return f"`ip netns` does not work here: {error}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address or a route in (but the default)."""
    used = []
    lines = _ip("-4", "-o", "addr", "show").splitlines() + _ip("-4", "route", "show", "table", "all").splitlines()
    for line in lines:
        for token in line.split()[:4]:
            try:
                network = ipaddress.ip_network(token, strict=False)
            except ValueError:
                continue
            if isinstance(network, ipaddress.IPv4Network):
                used.append(network)
    return used


class NamespaceNetwork:
    """Nodes in their own network namespaces on one bridge; links cut by blackhole routes.

    A hub namespace holds the bridge; every node namespace has `eth0` with address
    `subnet + index + 1` on it, and the root namespace one veth with `subnet + 254`, so
    that the harness reaches every node's API. A cut between nodes a and b is a
    blackhole route in each namespace to the other's address: packets vanish both ways,
    like a broken link (no refused connection). The subnet is a 10.x.y.0/24 that the
    root namespace does not use; nothing but what this class creates is touched, and
    `destroy` removes all of it.
    """

    def __init__(self) -> None:
        self.prefix = f"mc{secrets.token_hex(3)}"
        """Prefix of every namespace and interface name created."""
        self.subnet = self._free_subnet()
        """The /24 the nodes live in."""
        self.hub = f"{self.prefix}-hub"
        """The namespace of the bridge."""
        self.uplink = f"{self.prefix}r"
        """The root namespace's veth onto the bridge."""
        self.namespaces: dict[int, str] = {}
        """Node index → its namespace."""
        self.cuts: set[tuple[int, int]] = set()
        """Pairs of node indexes (smaller first) whose link is cut."""

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = _used_networks()
        for _ in range(500):
            candidate = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
            if not any(candidate.overlaps(network) for network in used if network.prefixlen > 0):
                return candidate
        raise NetworkUnavailable("no free 10.x.y.0/24 subnet for the test network")

    def address(self, index: int) -> str:
        """The address of node `index`."""
        if not 0 <= index < 250:
            raise ValueError("at most 250 nodes per namespace network")
        return str(self.subnet.network_address + index + 1)

    def create(self) -> None:
        """The hub namespace with its bridge, and the root namespace's veth onto it."""
        _NETWORKS.add(self)
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        _ip("link", "add", self.uplink, "type", "veth", "peer", "name", "uplink", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", "uplink", "master", "br0", "up")
        _ip("addr", "add", f"{self.subnet.network_address + 254}/24", "dev", self.uplink)
        _ip("link", "set", self.uplink, "up")

    def add_node(self, index: int) -> tuple[str, str]:
        """A namespace for node `index`, plugged into the bridge: (namespace, address)."""
        namespace, address = f"{self.prefix}-n{index}", self.address(index)
        _ip("netns", "add", namespace)
        self.namespaces[index] = namespace
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", f"p{index}", "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("-n", self.hub, "link", "set", f"p{index}", "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        return namespace, address

    def cut(self, first: int, second: int) -> None:
        """Drop every packet between two nodes, both ways."""
        pair = (min(first, second), max(first, second))
        if pair in self.cuts or first == second:
            return
        for here, there in ((first, second), (second, first)):
            _ip("-n", self.namespaces[here], "route", "add", "blackhole", f"{self.address(there)}/32")
        self.cuts.add(pair)

    def mend(self, first: int, second: int) -> None:
        """Undo `cut(first, second)`."""
        pair = (min(first, second), max(first, second))
        if pair not in self.cuts:
            return
        for here, there in ((first, second), (second, first)):
            _ip("-n", self.namespaces[here], "route", "del", "blackhole", f"{self.address(there)}/32")
        self.cuts.discard(pair)

    def destroy(self) -> list[str]:
        """Delete every namespace (their interfaces go with them) and the uplink; what failed."""
        problems = []
        for namespace in [*self.namespaces.values(), self.hub]:
            completed = subprocess.run(["ip", "netns", "del", namespace], capture_output=True, text=True,
                                       timeout=20, stdin=subprocess.DEVNULL)
            if completed.returncode != 0 and "No such file" not in completed.stderr:
                problems.append(f"ip netns del {namespace}: {completed.stderr.strip()}")
        self.namespaces.clear()
        self.cuts.clear()
        subprocess.run(["ip", "link", "del", self.uplink], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
        _NETWORKS.discard(self)
        return problems


# --- the testnet --------------------------------------------------------------------


class Testnet:
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
            self.start(index, env={"MARKETCHAIN_TEST_FAULT": fault})
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
                signalled[node.name] = _log_size(node)
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
        log_offset = _log_size(node)
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

    def perturb(self, steps: Iterable[Perturbation]) -> None:
        """Apply perturbations in order."""
        actions = {"kill": self.kill, "stop": self.stop, "start": self.start, "restart": self.restart,
                   "pause": self.pause, "resume": self.resume, "disconnect": self.disconnect,
                   "reconnect": self.reconnect}
        for step in steps:
            actions[step.action](step.index)

    def pause(self, index: int) -> None:
        """SIGSTOP node `index`: it neither answers nor sends until `resume`; wait until stopped."""
        node = self.nodes[index]
        assert node.running, f"{node.name} is not running"
        os.kill(node.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        node.paused = True
        wait_until(lambda: _process_state(node.pid) in ("T", "t", None), self.timeout,  # type: ignore[arg-type]
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

    # --- looking ----------------------------------------------------------------------

    @property
    def running_nodes(self) -> list[NodeHandle]:
        """The nodes whose process lives."""
        return [node for node in self.nodes if node.running]

    @property
    def available_nodes(self) -> list[NodeHandle]:
        """The nodes whose process lives and is not paused."""
        return [node for node in list(self.nodes) if node.available]

    def _select(self, nodes: Iterable[int] | None) -> list[NodeHandle]:
        return self.running_nodes if nodes is None else [self.nodes[i] for i in nodes]

    def describe(self, what: str) -> str:
        """`what`, then every node's state and log tail: a failure message."""
        lines = [what]
        for node in self.nodes:
            status = node.try_status() if node.available else None
            summary = "down" if not node.running else "paused" if node.paused else "not answering"
            if status is not None:
                summary = (f"height={status['height']} peers={status['peers']} syncing={status['syncing']} "
                           f"consensus={status['consensus']} mempool={status['mempool_size']}")
            lines.append(f"--- {node.name} pid={node.pid} {summary}\n{node.log_tail()}")
        return "\n".join(lines)

    def heights(self, nodes: Iterable[int] | None = None) -> dict[str, int]:
        """Height of each selected node (default: every running node)."""
        return {node.name: node.height() for node in self._select(nodes)}

    def wait_connected(self, nodes: Iterable[int] | None = None) -> None:
        """Wait until every selected validator sees all the other running validators."""
        selected = self._select(nodes)
        running_validators = sum(1 for node in self.nodes if node.validator and node.running)

        def connected() -> bool:
            for node in selected:
                status = node.try_status()
                wanted = running_validators - 1 if node.validator else 1
                if status is None or status["peers"] < wanted:
                    return False
            return True

        wait_until(connected, self.timeout, lambda: self.describe("nodes connected"))

    def wait_for_height(self, height: int, nodes: Iterable[int] | None = None) -> None:
        """Wait until every selected node is at `height` or above."""
        selected = self._select(nodes)

        def reached() -> bool:
            statuses = [node.try_status() for node in selected]
            return all(status is not None and status["height"] >= height for status in statuses)

        wait_until(reached, self.timeout, lambda: self.describe(f"height {height} on {[n.name for n in selected]}"))

    def wait_same_height(self, nodes: Iterable[int] | None = None) -> int:
        """Wait until the selected nodes agree on the latest height and have empty mempools."""
        selected = self._select(nodes)

        def agreed() -> int | None:
            statuses = [node.try_status() for node in selected]
            if any(status is None for status in statuses):
                return None
            heights = {status["height"] for status in statuses}  # type: ignore[index]
            idle = all(status["mempool_size"] == 0 for status in statuses)  # type: ignore[index]
            return heights.pop() if len(heights) == 1 and idle else None

        return wait_until(agreed, self.timeout, lambda: self.describe("same height, empty mempools"))

    def wait_idle(self, nodes: Iterable[int] | None = None) -> int:
        """Wait until the selected nodes are idle (R29) at one height, twice in a row:
        same height, empty mempools, the next height not started. Returns the height."""
        selected = self._select(nodes)
        seen: list[int] = []

        def idle() -> tuple[int] | None:  # a tuple: height 0 is an answer too
            statuses = [node.try_status() for node in selected]
            if any(status is None for status in statuses):
                return None
            heights = {status["height"] for status in statuses}  # type: ignore[index]
            quiet = all(status["mempool_size"] == 0 and not status["consensus"]["started"]  # type: ignore[index]
                        for status in statuses)
            height = heights.pop() if len(heights) == 1 and quiet else None
            seen.append(-1 if height is None else height)
            return (height,) if height is not None and seen[-2:] == [height, height] else None

        return wait_until(idle, self.timeout, lambda: self.describe("an idle network"), interval=0.3)[0]

    # --- transactions -----------------------------------------------------------------

    def address(self, who: str) -> bytes:
        """The address of a dev account by name, or of a hex address."""
        return self.keys[who].address if who in self.keys else bytes.fromhex(who)

    def transfer(self, sender: str, recipient: str, amount: int, node: int = 0, memo: str | None = None) -> str:
        """Sign a transfer locally with a dev key and POST it to node `node`; its hash (hex)."""
        key = self.keys[sender]
        target = self.nodes[node]
        status = target.status()
        nonce = target.get_ok(f"/accounts/{key.address.hex()}")["pending_nonce"]
        payload: dict[str, Any] = {"to": self.address(recipient), "amount": amount}
        if memo is not None:
            payload["memo"] = memo
        tx = sign_transaction(key, status["chain_id"], "transfer", payload, nonce, status["min_fee"])
        code, body = http_post(target.url + "/txs", tx.raw)
        if code != 202:
            raise AssertionError(f"{target.name}: POST /txs answered {code}: {body!r}")
        assert body["hash"] == tx.hash.hex()
        return body["hash"]

    def tx_on(self, node: NodeHandle, tx_hash: str) -> dict[str, Any] | None:
        """The transaction's view on `node`, or None when it does not know it / is down."""
        try:
            code, body = node.get(f"/txs/{tx_hash}")
        except OSError:
            return None
        if code == 404:
            return None
        if code != 200:
            raise AssertionError(f"{node.name}: GET /txs/{tx_hash} answered {code}: {body!r}")
        return body

    def is_final(self, tx_hash: str, node: NodeHandle) -> bool:
        """True when `node` holds the transaction in a final block."""
        view = self.tx_on(node, tx_hash)
        return view is not None and view["status"] == "committed"

    def wait_for_tx(self, tx_hash: str, nodes: Iterable[int] | None = None) -> dict[str, Any]:
        """Wait until the transaction is final on every selected node, in the same block."""
        selected = self._select(nodes)

        def final_everywhere() -> list[dict[str, Any]] | None:
            views = [self.tx_on(node, tx_hash) for node in selected]
            if all(view is not None and view["status"] == "committed" for view in views):
                return views  # type: ignore[return-value]
            return None

        views = wait_until(final_everywhere, self.timeout,
                           lambda: self.describe(f"tx {tx_hash} final on {[n.name for n in selected]}"))
        placements = {(view["height"], view["block_hash"]) for view in views}
        assert len(placements) == 1, f"tx {tx_hash} final in different blocks: {placements}"
        assert all(view["result"]["ok"] for view in views), views[0]
        return views[0]

    # --- checks -----------------------------------------------------------------------

    def block_hashes(self, node: NodeHandle, up_to: int) -> list[str]:
        """Hashes of blocks 1 … up_to on `node`."""
        return [node.get_ok(f"/blocks/{height}")["hash"] for height in range(1, up_to + 1)]

    def assert_identical_blocks(self, nodes: Iterable[int] | None = None, up_to: int | None = None) -> int:
        """Every selected node holds the same blocks 1 … up_to (default: the lowest height); returns it.

        Also checks each block's own commit carries precommits of more than 2/3 of its set.
        """
        selected = self._select(nodes)
        height = min(node.height() for node in selected) if up_to is None else up_to
        reference = self.block_hashes(selected[0], height)
        for node in selected[1:]:
            hashes = self.block_hashes(node, height)
            for at, (mine, theirs) in enumerate(zip(reference, hashes, strict=True), start=1):
                assert mine == theirs, f"block {at}: {selected[0].name} has {mine}, {node.name} has {theirs}"
        probe = selected[0]
        for at in range(1, height + 1):
            block = probe.get_ok(f"/blocks/{at}")
            members = {entry["address"] for entry in probe.get_ok(f"/validators?height={at}")["validators"]}
            signers = {entry["validator"] for entry in block["commit"]["signatures"]}
            assert signers <= members and 3 * len(signers) > 2 * len(members), (
                f"block {at}: commit of {len(signers)} of {len(members)} validators")
        return height

    def wait_identical_blocks(self, nodes: Iterable[int] | None = None, height: int | None = None) -> int:
        """Wait until the selected nodes reach `height` (default: the highest among them), then
        check they hold identical blocks up to it; returns it."""
        selected = self._select(nodes)
        if height is None:
            height = max(node.height() for node in selected)
        self.wait_for_height(height, [node.index for node in selected])
        return self.assert_identical_blocks([node.index for node in selected], height)

    def genesis_supply(self) -> int:
        """Sum of every genesis balance."""
        return sum(account["balance"] for account in self.genesis["accounts"])

    def supply_on(self, node: NodeHandle) -> int:
        """Sum of the balances of every genesis account on `node`, read at one height."""

        def consistent_read() -> int | None:
            before = node.height()
            total = sum(node.get_ok(f"/accounts/{account['address']}")["balance"]
                        for account in self.genesis["accounts"])
            return total if node.height() == before else None

        return wait_until(consistent_read, self.timeout, f"a read of {node.name}'s balances at one height")

    def assert_conservation(self, nodes: Iterable[int] | None = None) -> None:
        """Transfers and fees move money between genesis accounts; none is made or lost."""
        expected = self.genesis_supply()
        for node in self._select(nodes):
            assert self.supply_on(node) == expected, f"{node.name}: money supply changed"

    def log_problems(self) -> dict[str, list[str]]:
        """Suspicious node.log lines of every node that has any."""
        return {node.name: problems for node in self.nodes if (problems := node.log_problems())}


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
    for network in list(_NETWORKS):
        network.destroy()


atexit.register(_kill_leftovers)
