"""A small multi-node test harness in the spirit of CometBFT's `test/e2e`.

A testnet is described as data (a `Manifest`: how many validators, genesis
parameters, test faults per node) and started for real through the CLI
(`marketchain testnet start`, PROTOCOL §11) on free loopback ports. Perturbations
are methods of `Testnet` (`kill`, `stop`, `start`, `restart`, `add_full_node`) or
data given to `Testnet.perturb`. Checks are the e2e ones: heights, every node
holding identical blocks, transactions final everywhere, and conservation of the
money supply.

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
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from node_process import edit_config, free_port, http_get, http_post

from marketplace_tx.crypto import KeyPair
from marketplace_tx.transaction import sign_transaction

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

T = TypeVar("T")

_LIVE: set[Testnet] = set()
"""Testnets not yet closed: their processes are killed at interpreter exit."""


# --- waiting ------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    message: str | Callable[[], str] = "condition",
    interval: float = 0.1,
) -> T:
    """Poll `predicate` until it returns something truthy, and return it.

    Raises AssertionError with `message` (or `message()`, for fresh diagnostics)
    after `timeout` seconds. The only sleeps of the harness are these polls.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {text}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def free_base_port(count: int) -> int:
    """A port P such that P … P+count-1 are all free on 127.0.0.1 right now."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 2)
        sockets = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise RuntimeError("no free range of ports")


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


@dataclass(frozen=True)
class Perturbation:
    """One step of a scenario: `kill`, `stop`, `start` or `restart` node `index`."""

    action: str
    """`kill` (SIGKILL), `stop` (SIGTERM), `start` or `restart` (stop, then start)."""
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
        """`node_id@127.0.0.1:p2p_port`, for another node's persistent peers."""
        return f"{self.node_id}@127.0.0.1:{self.p2p_port}"

    @property
    def running(self) -> bool:
        """True while its process lives."""
        if self.pid is None:
            return False
        if self.process is not None:
            return self.process.poll() is None
        return _pid_alive(self.pid)

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

    # --- life cycle -------------------------------------------------------------------

    def start_all(self) -> Testnet:
        """`marketchain testnet start`, then start the nodes with faults; wait until all connect."""
        _LIVE.add(self)
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
        self._write_pids()

    def stop(self, index: int) -> None:
        """SIGTERM node `index`, wait for it to exit, and check it stopped cleanly."""
        node = self.nodes[index]
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
        with open(node.log_path, "ab") as log_file:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "node", "start", "--home", str(node.home)],
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
        actions = {"kill": self.kill, "stop": self.stop, "start": self.start, "restart": self.restart}
        for step in steps:
            actions[step.action](step.index)

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
        edit_config(home, {"p2p": {"persistent_peers": [self.nodes[i].peer_address for i in chosen]}})
        node = NodeHandle(index=index, name=name, home=home, url=f"http://127.0.0.1:{http_port}",
                          p2p_port=p2p_port, validator=False)
        self.nodes.append(node)
        self.start(index)
        return node

    # --- looking ----------------------------------------------------------------------

    @property
    def running_nodes(self) -> list[NodeHandle]:
        """The nodes whose process lives."""
        return [node for node in self.nodes if node.running]

    def _select(self, nodes: Iterable[int] | None) -> list[NodeHandle]:
        return self.running_nodes if nodes is None else [self.nodes[i] for i in nodes]

    def describe(self, what: str) -> str:
        """`what`, then every node's state and log tail: a failure message."""
        lines = [what]
        for node in self.nodes:
            status = node.try_status() if node.running else None
            summary = "down" if not node.running else "not answering"
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

        def idle() -> int | None:
            statuses = [node.try_status() for node in selected]
            if any(status is None for status in statuses):
                return None
            heights = {status["height"] for status in statuses}  # type: ignore[index]
            quiet = all(status["mempool_size"] == 0 and not status["consensus"]["started"]  # type: ignore[index]
                        for status in statuses)
            height = heights.pop() if len(heights) == 1 and quiet else None
            seen.append(-1 if height is None else height)
            return height if height is not None and seen[-2:] == [height, height] else None

        return wait_until(idle, self.timeout, lambda: self.describe("an idle network"), interval=0.3)

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


atexit.register(_kill_leftovers)
