"""Local testnets: N validator processes on loopback, described by `DIR/testnet.json` (PROTOCOL §11).

Layout of a testnet directory:

    DIR/testnet.json          {chain_id, nodes: [{name, http, p2p, pid, home, validator}]}
    DIR/accounts/NAME.json    funded dev keys {"address", "secret_seed"}; `faucet` is a registrar
    DIR/nodeI/                each node's home (config, keys, genesis, data, node.log)

Node i listens for P2P on base_port + 2i and for HTTP on base_port + 2i + 1.

The client makes the keys and the shared genesis; the homes are written by the node's
own code, one `python -m cli testnet-homes` process per testnet (`client` never imports
`node`), and the nodes run as `python -m cli node start` processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.keystore import write_plain_key
from client.node_client import ClientError, NodeClient
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.crypto import KeyPair

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
"""Where `python -m cli` runs node processes from."""
ENVIRONMENT_PREFIX = "MARKETCHAIN_"
"""Prefix of the node's option variables (`node.config.ENVIRONMENT_PREFIX`)."""
TESTNET_FILE = "testnet.json"
DEV_ACCOUNTS = ("faucet", "alice", "bob", "carol", "dave", "erin")
"""Funded dev accounts every testnet writes to DIR/accounts/."""
FAUCET_BALANCE = 100_000_000 * 1_000_000
"""µMKT of the faucet (100 million MKT)."""
DEV_BALANCE = 100_000 * 1_000_000
"""µMKT of every other dev account (100,000 MKT)."""
VALIDATOR_BALANCE = 1_000_000 * 1_000_000
"""µMKT of each validator's own account."""


class TestnetError(Exception):
    """A testnet that cannot be created, started or stopped, and why."""


@dataclass(frozen=True)
class TestnetNode:
    """One node of a testnet, as written to testnet.json."""

    name: str
    """node0, node1, …"""
    http: str
    """Base URL of its API."""
    p2p: str
    """host:port of its P2P listener."""
    pid: int | None
    """Its process id while running."""
    home: str
    """Its home directory."""
    validator: str
    """Its validator address (hex)."""

    def to_json(self) -> dict[str, Any]:
        """The testnet.json entry."""
        return {
            "name": self.name,
            "http": self.http,
            "p2p": self.p2p,
            "pid": self.pid,
            "home": self.home,
            "validator": self.validator,
        }


def read_testnet(directory: Path) -> dict[str, Any]:
    """Parse DIR/testnet.json."""
    path = directory / TESTNET_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TestnetError(
            f"no testnet in {directory} ({TESTNET_FILE} is missing): create one with "
            f"`marketchain testnet start --home {directory}`"
        ) from None
    except json.JSONDecodeError as error:
        raise TestnetError(f"{path} is not valid JSON: {error}") from None


def _write_testnet(directory: Path, chain_id: str, nodes: list[TestnetNode]) -> None:
    path = directory / TESTNET_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(
        json.dumps({"chain_id": chain_id, "nodes": [node.to_json() for node in nodes]}, indent=2) + "\n"
    )
    os.replace(temporary, path)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def create_testnet(
    directory: Path, node_count: int, base_port: int, params: Params, chain_id: str = "marketchain-testnet"
) -> list[TestnetNode]:
    """Write homes, shared genesis and dev accounts for a new testnet (nothing is started)."""
    if node_count < 1:
        raise TestnetError("a testnet needs at least one node")
    directory.mkdir(parents=True, exist_ok=True)
    validator_keys = sorted((KeyPair.generate() for _ in range(node_count)), key=lambda key: key.address)
    accounts_directory = directory / "accounts"
    accounts_directory.mkdir(exist_ok=True)
    balances: dict[bytes, tuple[int, tuple[str, ...]]] = {}
    for name in DEV_ACCOUNTS:
        key = KeyPair.generate()
        write_plain_key(accounts_directory / f"{name}.json", key)
        balances[key.address] = (
            (FAUCET_BALANCE, ("registrar",)) if name == "faucet" else (DEV_BALANCE, ())
        )
    for key in validator_keys:
        balances[key.address] = (VALIDATOR_BALANCE, ("registrar",))
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time=int(time.time() * 1000),
        validators=tuple(key.address for key in validator_keys),
        accounts=tuple(
            GenesisAccount(address, balance, roles) for address, (balance, roles) in sorted(balances.items())
        ),
        params=params,
    )
    genesis.validate()
    nodes = []
    homes = []
    node_keys = [KeyPair.generate() for _ in validator_keys]
    listen = [f"{node_keys[i].address.hex()}@127.0.0.1:{base_port + 2 * i}" for i in range(node_count)]
    for index, key in enumerate(validator_keys):
        p2p_port, http_port = base_port + 2 * index, base_port + 2 * index + 1
        home = directory / f"node{index}"
        homes.append({
            "home": os.path.abspath(home),
            "moniker": f"node{index}",
            "http_port": http_port,
            "p2p_port": p2p_port,
            "persistent_peers": [p for j, p in enumerate(listen) if j != index],
            "validator_seed": key.seed.hex(),
            "node_seed": node_keys[index].seed.hex(),
        })
        nodes.append(
            TestnetNode(
                name=f"node{index}",
                http=f"http://127.0.0.1:{http_port}",
                p2p=f"127.0.0.1:{p2p_port}",
                pid=None,
                home=str(home.resolve()),
                validator=key.address.hex(),
            )
        )
    write_node_homes(genesis, homes)
    _write_testnet(directory, chain_id, nodes)
    return nodes


def write_node_homes(genesis: Genesis, homes: list[dict[str, Any]]) -> None:
    """Have the node write every home (config, keys, genesis) in one `marketchain testnet-homes` process.

    The client makes the keys and the genesis; the node's own code writes its file formats,
    so `client` never imports `node`. A refusal (e.g. a home that already exists) is a TestnetError.
    """
    spec = json.dumps({"genesis": genesis.to_json(), "nodes": homes})
    completed = subprocess.run(
        [sys.executable, "-m", "cli", "testnet-homes"],
        input=spec, capture_output=True, text=True, cwd=str(REPOSITORY_ROOT), check=False,
    )
    if completed.returncode != 0:
        message = completed.stderr.strip().splitlines()[-1:] or [f"exit code {completed.returncode}"]
        raise TestnetError(message[0].removeprefix("Error: "))


def _nodes_of(description: dict[str, Any]) -> list[TestnetNode]:
    return [TestnetNode(**entry) for entry in description["nodes"]]


PER_NODE_OPTIONS = ("moniker", "http.host", "http.port", "p2p.host", "p2p.port", "p2p.persistent_peers")
"""Options each testnet node's config.toml sets for it alone; an environment variable must not override them."""


def node_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a testnet node: ours, less the variables that would give every node the same port."""
    dropped = {ENVIRONMENT_PREFIX + option.replace(".", "_").upper() for option in PER_NODE_OPTIONS}
    return {name: value for name, value in environ.items() if name not in dropped}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def start_testnet(
    directory: Path, timeout: float = 60.0, progress: Callable[[TestnetNode], None] | None = None
) -> list[TestnetNode]:
    """Start every node of the testnet in DIR that is not running, in the background; return once
    all serve. Nodes still running are kept, so a testnet with a dead node is completed without
    stopping the others; when every node runs already, that is an error.

    `progress` is called with each node once it serves (for a progress bar).
    """
    description = read_testnet(directory)
    nodes = _nodes_of(description)
    if all(_alive(node.pid) for node in nodes):
        raise TestnetError(f"every node of the testnet in {directory} is already running; "
                           "run `testnet stop` first to restart it")
    missing = [node for node in nodes if not _alive(node.pid)]
    for node in missing:
        for port in (int(node.http.rsplit(":", 1)[1]), int(node.p2p.rsplit(":", 1)[1])):
            if not _port_is_free(port):
                raise TestnetError(f"port {port} for {node.name} is in use; choose another --base-port")
    started = []
    for node in nodes:
        if _alive(node.pid):
            started.append(node)
            continue
        log_file = open(Path(node.home) / "node.log", "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "node", "start", "--home", node.home],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(REPOSITORY_ROOT),
            env=node_environment(os.environ),
        )
        log_file.close()
        started.append(TestnetNode(**{**node.to_json(), "pid": process.pid}))
    _write_testnet(directory, description["chain_id"], started)
    deadline = time.monotonic() + timeout
    for node in started:
        client = NodeClient(node.http, timeout=2.0)
        while True:
            try:
                client.status()
                break
            except ClientError:
                pass
            if not _alive(node.pid):
                raise TestnetError(f"{node.name} exited while starting; see {node.home}/node.log")
            if time.monotonic() > deadline:
                raise TestnetError(f"{node.name} did not serve {node.http} within {timeout:.0f} s")
            time.sleep(0.1)
        if progress is not None:
            progress(node)
    return started


def stop_testnet(directory: Path, timeout: float = 30.0) -> list[str]:
    """SIGTERM every running node, wait for it, SIGKILL stragglers; return the names stopped."""
    description = read_testnet(directory)
    nodes = _nodes_of(description)
    stopped = []
    for node in nodes:
        if _alive(node.pid):
            os.kill(node.pid, signal.SIGTERM)  # type: ignore[arg-type]
            stopped.append(node.name)
    deadline = time.monotonic() + timeout
    for node in nodes:
        while _alive(node.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(node.pid):
            os.kill(node.pid, signal.SIGKILL)  # type: ignore[arg-type]
    _write_testnet(
        directory, description["chain_id"], [TestnetNode(**{**node.to_json(), "pid": None}) for node in nodes]
    )
    return stopped


def testnet_status(directory: Path) -> list[dict[str, Any]]:
    """Each node's name, process state and, if it answers, height, sync target and peers."""
    rows = []
    for node in _nodes_of(read_testnet(directory)):
        row: dict[str, Any] = {"name": node.name, "http": node.http, "pid": node.pid, "running": _alive(node.pid)}
        try:
            status = NodeClient(node.http, timeout=2.0).status()
            target = max((status.get("sync") or {}).get("target", 0), status["height"])
            consensus = status.get("consensus") or {}
            row.update(height=status["height"], target=target, peers=status["peers"], syncing=status["syncing"],
                       round=consensus.get("round"), step=consensus.get("step"))
        except ClientError as error:
            row["error"] = error.message
        rows.append(row)
    return rows
