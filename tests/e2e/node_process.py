"""Real marketchain node processes on loopback, for integration tests (PROTOCOL §10, §11).

`NodeProcess` runs `marketchain init` and `marketchain node start` as subprocesses
(`python -m cli …` from the repository root) on ephemeral ports, waits for
`GET /status` to answer, and stops, kills or restarts the node on the same home and
port. Every failure message carries the tail of `HOME/node.log`.

`http_get` / `http_post` talk to a node with urllib and never raise on 4xx/5xx:
they return `(status, body)` with the body parsed as JSON when the node says it is
JSON, raw bytes otherwise. `wait_until` is the one way to wait: a condition polled
until a deadline, never a fixed sleep.

Waiting, HTTP, ports, log tails and the config writer come from the one harness
(tests/e2e/harness/), shared with the testnets and fault scenarios, and are re-exported
here. The module imports nothing from the project's code at import time (the config
writer is imported when a config is edited), so that a test of an independent client
can use it for process management alone.

    from tests.e2e.node_process import NodeProcess

    def test_something(tmp_path):
        with NodeProcess(tmp_path / "node", fund={address: 10_000_000},
                         params={"min_fee": 1}, config={"http": {"max_body_bytes": 4096}}) as node:
            status, body = node.get("/status")
            tx_hash = node.submit(raw_tx_bytes)
            view = node.wait_for_tx(tx_hash)
            node.kill()       # SIGKILL
            node.start()      # same home, same port
            node.restart()    # SIGTERM (asserts exit 0), then start
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.harness.config_file import edit_config
from tests.e2e.harness.http_client import (
    JSON_TYPE,
    MSGPACK_TYPE,
    HttpResponse,
    http_get,
    http_post,
    http_request,
    is_error_body,
)
from tests.e2e.harness.ports import LISTEN_PORTS, free_base_port, free_port
from tests.e2e.harness.processes import LOG_TAIL_LINES, log_tail
from tests.e2e.harness.waiting import DEFAULT_TIMEOUT, MAX_POLL_INTERVAL, POLL_INTERVAL, wait_until
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from marketplace_tx.primitives.crypto import KeyPair

__all__ = [
    "DEFAULT_TIMEOUT", "JSON_TYPE", "LISTEN_PORTS", "LOG_TAIL_LINES", "MAX_POLL_INTERVAL", "MSGPACK_TYPE",
    "POLL_INTERVAL", "REPO_ROOT", "HttpResponse", "NodeProcess", "edit_config", "free_base_port", "free_port",
    "http_get", "http_post", "http_request", "is_error_body", "wait_until",
]

PORT_ATTEMPTS = 5
"""Fresh ports tried when a first start finds its ephemeral port taken meanwhile."""

_RUNNING: set[NodeProcess] = set()
"""Nodes started and not yet stopped: killed at interpreter exit so nothing leaks."""


# --- the node process ---------------------------------------------------------------


class NodeProcess:
    """One `marketchain node start` process with its own home and ephemeral ports.

    Use as a context manager (`with NodeProcess(tmp_path / "node") as node:`), or call
    `start()` and `stop()`/`kill()` yourself. `start()` runs `marketchain init` the
    first time.
    """

    def __init__(
        self,
        home: Path | str,
        params: Mapping[str, Any] | Iterable[str] = (),
        fund: Mapping[bytes | str, int] | None = None,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        chain_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.home = Path(home)
        """The node's home directory (config, keys, genesis, data, node.log)."""
        if isinstance(params, Mapping):
            self.params = [f"{name}={value}" for name, value in params.items()]
        else:
            self.params = list(params)
        """Genesis `--param NAME=VALUE` options for `init`."""
        self.fund = {
            (address.hex() if isinstance(address, bytes) else address): amount
            for address, amount in (fund or {}).items()
        }
        """Accounts funded in genesis: hex address → µMKT."""
        self.config_overrides = dict(config or {})
        """config.toml options written after `init`, before the first start."""
        self.chain_id = chain_id
        """`--chain-id` for `init` (default: the CLI's)."""
        self.timeout = timeout
        """Deadline of every wait, in seconds."""
        self.http_port: int | None = None
        """The HTTP port, fixed for the node's life (restarts reuse it)."""
        self.p2p_port: int | None = None
        """The P2P port written to config.toml."""
        self.process: subprocess.Popen[bytes] | None = None
        """The running node process, if any."""
        self._ports_never_served = False
        self._log_handle: Any = None

    # --- paths and identity ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the node's API, e.g. `http://127.0.0.1:41234`."""
        assert self.http_port is not None, "the node was never initialized"
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        """Where the node's stdout and stderr go (appended across restarts)."""
        return self.home / "node.log"

    def _key_document(self, name: str) -> dict[str, str]:
        return json.loads((self.home / name).read_text())

    @property
    def validator_key(self) -> KeyPair:
        """The validator's `marketplace_tx.primitives.crypto.KeyPair` from `HOME/validator_key.json`."""
        from marketplace_tx.primitives.crypto import KeyPair

        return KeyPair.from_seed(bytes.fromhex(self._key_document("validator_key.json")["secret_seed"]))

    @property
    def validator_address(self) -> bytes:
        """The validator's address, read without the project's code."""
        return bytes.fromhex(self._key_document("validator_key.json")["address"])

    @property
    def validator_seed(self) -> bytes:
        """The validator's 32-byte secret seed."""
        return bytes.fromhex(self._key_document("validator_key.json")["secret_seed"])

    @property
    def node_id(self) -> str:
        """The node key's address in hex, as `/status` reports it."""
        return self._key_document("node_key.json")["address"]

    def genesis(self) -> dict[str, Any]:
        """`HOME/genesis.json` as JSON."""
        return json.loads((self.home / "genesis.json").read_text())

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.process is not None and self.process.poll() is None

    # --- diagnostics ----------------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of node.log, for failure messages."""
        return log_tail(self.log_path, lines)

    def describe(self, what: str) -> str:
        """`what`, the process state and the log tail: a failure message."""
        state = "not started"
        if self.process is not None:
            code = self.process.poll()
            state = f"pid {self.process.pid} " + ("running" if code is None else f"exited with {code}")
        return f"{what}\nnode {self.home} ({state})\n--- tail of {self.log_path} ---\n{self.log_tail()}"

    def check(self, condition: Any, what: str) -> None:
        """Assert `condition`, quoting the log tail on failure."""
        if not condition:
            raise AssertionError(self.describe(what))

    # --- HTTP shortcuts ---------------------------------------------------------------

    def get(self, path: str) -> tuple[int, Any]:
        """GET a path of this node's API."""
        return http_get(self.url + path)

    def post(self, path: str, body: bytes | Any, content_type: str | None = None) -> tuple[int, Any]:
        """POST to a path of this node's API."""
        return http_post(self.url + path, body, content_type)

    def get_ok(self, path: str) -> Any:
        """GET a path that must answer 200; its body."""
        status, body = self.get(path)
        self.check(status == 200, f"GET {path} answered {status}: {body!r}")
        return body

    def status(self) -> dict[str, Any]:
        """`GET /status`."""
        return self.get_ok("/status")

    def height(self) -> int:
        """The node's current height."""
        return self.status()["height"]

    def account(self, address: bytes | str) -> dict[str, Any]:
        """`GET /accounts/{address}`."""
        text = address.hex() if isinstance(address, bytes) else address
        return self.get_ok(f"/accounts/{text}")

    def submit(self, raw: bytes) -> str:
        """POST /txs with canonical bytes; the tx hash (asserts 202)."""
        status, body = self.post("/txs", raw)
        self.check(status == 202, f"POST /txs answered {status}: {body!r}")
        return body["hash"]

    def wait_for_tx(self, tx_hash: str) -> dict[str, Any]:
        """Poll `GET /txs/{hash}` until the transaction is committed; its view."""

        def committed() -> dict[str, Any] | None:
            status, body = self.get(f"/txs/{tx_hash}")
            if status == 200 and body.get("status") == "committed":
                return body
            self.check(status in (200, 404), f"GET /txs/{tx_hash} answered {status}: {body!r}")
            self.check(self.running, f"node died while waiting for tx {tx_hash}")
            return None

        return wait_until(committed, self.timeout, lambda: self.describe(f"tx {tx_hash} committed"))

    def wait_for_height(self, height: int) -> dict[str, Any]:
        """Poll `/status` until the node is at `height` or above; the status."""

        def reached() -> dict[str, Any] | None:
            self.check(self.running, f"node died while waiting for height {height}")
            status = self.status()
            return status if status["height"] >= height else None

        return wait_until(reached, self.timeout, lambda: self.describe(f"height {height}"))

    # --- life cycle -----------------------------------------------------------------

    def _cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *arguments],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )

    def init(self) -> None:
        """`marketchain init` into `home` with fresh ports, params, funds and config."""
        self.http_port = free_port()
        self.p2p_port = free_port()
        arguments = [
            "init",
            "--home",
            str(self.home),
            "--http-port",
            str(self.http_port),
            "--p2p-port",
            str(self.p2p_port),
        ]
        if self.chain_id is not None:
            arguments += ["--chain-id", self.chain_id]
        for param in self.params:
            arguments += ["--param", param]
        for address, amount in self.fund.items():
            arguments += ["--fund", f"{address}={amount}µMKT"]
        self._ports_never_served = True
        result = self._cli(*arguments)
        assert result.returncode == 0, (
            f"marketchain init failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
        if self.config_overrides:
            edit_config(self.home, self.config_overrides)

    def start(self) -> NodeProcess:
        """Start the node (running `init` first if the home is new); wait until it serves.

        Until the node has served once, a port taken between choosing and binding it
        is replaced by a fresh one; restarts keep the node's port.
        """
        assert not self.running, "the node is already running"
        if not (self.home / "config.toml").exists():
            self.init()
        elif self.http_port is None:
            config = tomllib.loads((self.home / "config.toml").read_text())
            self.http_port = config["http"]["port"]
            self.p2p_port = config["p2p"]["port"]
        for attempt in range(PORT_ATTEMPTS):
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._launch()
                self._ports_never_served = False
                return self
            except AssertionError:
                log = self.log_path.read_bytes()[log_offset:].decode(errors="replace").lower()
                port_taken = "address already in use" in log or "errno 98" in log
                if not (self._ports_never_served and port_taken and attempt + 1 < PORT_ATTEMPTS):
                    raise
            self.http_port = free_port()
            self.p2p_port = free_port()
            edit_config(self.home, {"http": {"port": self.http_port}, "p2p": {"port": self.p2p_port}})
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        self._log_handle = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "node", "start", "--home", str(self.home)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _RUNNING.add(self)
        expected_node_id = self.node_id

        def serving() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise AssertionError(self.describe("the node exited during start-up"))
            try:
                status, body = http_get(self.url + "/status", timeout=5.0)
            except OSError:
                return False
            return status == 200 and isinstance(body, dict) and body.get("node_id") == expected_node_id

        try:
            wait_until(serving, self.timeout, lambda: self.describe(f"GET {self.url}/status"))
        except BaseException:
            self.kill()
            raise

    def _reap(self) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(self.describe(f"the node did not exit within {self.timeout:.0f} s")) from None
        finally:
            _RUNNING.discard(self)
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None
        return code

    def stop(self) -> None:
        """SIGTERM, wait, and assert a clean exit (code 0, PROTOCOL §11)."""
        assert self.process is not None, "the node was never started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self._reap()
        if code != 0:
            raise AssertionError(self.describe(f"SIGTERM: the node exited with {code}, not 0"))

    def kill(self) -> None:
        """SIGKILL the node (a crash) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self._reap()

    def restart(self) -> NodeProcess:
        """Stop the node cleanly if it runs, then start it again on the same home and port."""
        if self.running:
            self.stop()
        return self.start()

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if not self.running:
            if self.process is not None and self.process.poll() is not None:
                _RUNNING.discard(self)
            return
        if kind is None:
            self.stop()
        else:
            self.kill()

    def __repr__(self) -> str:
        return f"NodeProcess({self.home}, port={self.http_port}, running={self.running})"


def _kill_leftovers() -> None:
    for node in list(_RUNNING):
        if node.process is not None and node.process.poll() is None:
            try:
                os.kill(node.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


atexit.register(_kill_leftovers)
