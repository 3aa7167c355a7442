"""One node of a testnet as the harness sees it: its home, its URL, its process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness.http_client import POLITE_PATIENCE_S, http_get
from tests.e2e.harness.processes import log_problems, log_tail, pid_alive

LOG_TAIL_LINES = 25
"""Lines of each node.log quoted in a failure message."""

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
        return pid_alive(self.pid)

    @property
    def available(self) -> bool:
        """True while its process lives and is not paused: it can answer requests."""
        return self.running and not self.paused

    def exit_code(self) -> int | None:
        """The exit code, when the harness started the process and it has exited."""
        return self.process.poll() if self.process is not None else None

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        """GET a path of its API as a good client: a 429 is retried after its `Retry-After`
        (bounded by `POLITE_PATIENCE_S`). Raises OSError when nothing answers."""
        return http_get(self.url + path, timeout=timeout, patience_s=POLITE_PATIENCE_S)

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
        return log_tail(self.log_path, lines)

    def log_problems(self) -> list[str]:
        """Records of node.log that reveal a bug (tracebacks, ERROR), each with its traceback."""
        return log_problems(self.log_path)
