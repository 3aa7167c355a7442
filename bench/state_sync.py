"""Benchmark: state sync (R39, issue 15) against block sync (R30) of the same long chain.

One run, one machine, beside the Ed25519 yardstick:

1. **The chain**: `--chain-txs` real transfers (default 1,000,000) touching `--accounts`
   accounts (default 100,000: the senders, funded at genesis, and the recipients, every one
   of them credited), built in this process straight into a node home: real signed
   transactions (signed by `--signers` worker processes), `build_block`, a commit signed by
   the home's validator key, `ChainStore.commit_block` — the very blocks and commits a
   node would have made, so a joiner verifies every signature of them.
2. **The source**: that home started as a one-authority node (`marketchain node start`)
   with `MARKETCHAIN_STATESYNC_SNAPSHOT_INTERVAL` = its head height, so that the snapshot
   writer writes the head's snapshot at start; the bench waits until `GET /snapshots`
   lists it.
3. **Block sync**: a fresh node (the same genesis, the source as persistent peer) that
   replays every block; **state sync**: a fresh node with `MARKETCHAIN_STATESYNC_ENABLE=true`.
   Each is timed from its process start to a node that **serves correct state and follows
   the chain**: `/status` not syncing at a height ≥ the snapshot's, `/accounts/{a}` of a
   sample of accounts equal to the source's, the same `/accounts/{a}/proof` (value, proof
   and state root) at one height on both, and then a transfer submitted to the source
   found on the joiner (`/txs/{hash}`) once the source made its block.
4. Each joiner's peak RSS (`VmHWM` of /proc/<pid>/status, read before it is stopped) and,
   for state sync, the phases its log reports (`--profile-joiner` runs it under cProfile:
   `MARKETCHAIN_BENCH_PROFILE` → `bench/results/state_sync_joiner.prof`).

Targets (issue 15): state sync ≤ 10 % of block sync's time; the joiner's peak RSS ≤ 300 MB.

    .venv/bin/python bench/state_sync.py                                  # full size: build + ~10 min
    .venv/bin/python bench/state_sync.py --keep DIR                       # keep it: a rerun reuses the chain
    .venv/bin/python bench/state_sync.py --chain-txs 100000 --accounts 10000
    .venv/bin/python bench/run.py --only statesync                        # inside the bench table
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import nacl.bindings
import state_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))  # after bench/ itself: the test harness's ports

from consensus.commit import sign_commit  # noqa: E402
from marketplace_tx.chain.params import Params  # noqa: E402
from marketplace_tx.chain.transaction import decode_transaction  # noqa: E402
from marketplace_tx.primitives import codec  # noqa: E402
from marketplace_tx.primitives.crypto import KeyPair, signing_bytes  # noqa: E402
from marketplace_tx.rules.state_transition import build_block  # noqa: E402
from node.config import HttpConfig, P2pConfig  # noqa: E402
from node.home import init_home, read_genesis, single_validator_genesis  # noqa: E402
from node.storage import ChainStore  # noqa: E402
from tests.e2e.harness import ports as harness_ports  # noqa: E402

PYTHON = sys.executable
CHAIN_ID = "bench-statesync"
FEE = 10
BLOCK_INTERVAL_MS = 1000
"""Time between the built blocks (R28: strictly increasing; the last one is in the past)."""
TIME_TARGET = 0.10
"""Issue 15: state sync takes at most 10 % of block sync's time."""
RSS_TARGET_MB = 300
"""Issue 15: the restoring process's peak RSS is at most 300 MB."""
SAMPLE_ACCOUNTS = 32
"""Accounts whose `/accounts/{a}` are compared between the joiner and the source."""
JOIN_DEADLINE_S = 3600
POLL_S = 0.5
"""How often a joiner is asked for `/status`: each answer hashes the genesis again (~37 ms of the
node's event loop with 1,001 genesis accounts), so polling faster would slow the joiner measured."""
RESULTS = ROOT / "bench" / "results"
PROFILE_VARIABLE = "MARKETCHAIN_BENCH_PROFILE"
"""When set, the joiner runs under cProfile and writes its profile to this path."""


@dataclasses.dataclass(frozen=True)
class ChainPlan:
    """The shape of the bench chain."""

    transactions: int
    """Transfers in the chain."""
    accounts: int
    """Distinct accounts in its state: senders + recipients (the validator aside)."""
    senders: int
    """Accounts with keys, funded at genesis, that send the transfers round-robin."""
    block_transactions: int
    """Transfers per block (the last block may hold fewer)."""

    @property
    def blocks(self) -> int:
        """Blocks in the chain."""
        return -(-self.transactions // self.block_transactions)

    @property
    def recipients(self) -> int:
        """Keyless accounts the transfers credit (transfer j goes to recipient j mod this)."""
        return self.accounts - self.senders


def sender_seed(index: int) -> bytes:
    """The deterministic seed of the `index`-th sender."""
    return hashlib.sha256(b"marketchain-bench/statesync-sender" + index.to_bytes(8, "big")).digest()


def recipient_address(index: int) -> bytes:
    """The `index`-th recipient (no key: it only receives)."""
    return hashlib.sha256(b"marketchain-bench/statesync-recipient" + index.to_bytes(8, "big")).digest()


VALIDATOR = KeyPair.from_seed(hashlib.sha256(b"marketchain-bench/statesync-validator").digest())
"""The one authority of the bench chain (its home's validator key)."""


# --- signing, in worker processes --------------------------------------------------------

_SECRETS: list[bytes] = []
_ADDRESSES: list[bytes] = []


def _load_senders(count: int) -> None:
    """Worker initializer: expand every sender's key once."""
    for index in range(count):
        address, secret = nacl.bindings.crypto_sign_seed_keypair(sender_seed(index))
        _ADDRESSES.append(address)
        _SECRETS.append(secret)


def sign_block(job: tuple[ChainPlan, int]) -> list[bytes]:
    """The signed transfers of block `number` (0-based): transfer j is sent by sender
    j mod senders with nonce j div senders, to recipient j mod recipients."""
    plan, number = job
    if not _SECRETS:
        _load_senders(plan.senders)
    first = number * plan.block_transactions
    raws = []
    for j in range(first, min(plan.transactions, first + plan.block_transactions)):
        sender = j % plan.senders
        body = {"chain_id": CHAIN_ID, "fee": FEE, "nonce": j // plan.senders,
                "payload": {"amount": 1, "to": recipient_address(j % plan.recipients)},
                "sender": _ADDRESSES[sender], "type": "transfer"}
        signature = nacl.bindings.crypto_sign(signing_bytes("tx", body), _SECRETS[sender])[:64]
        raws.append(codec.encode({**body, "sig": signature}))
    return raws


# --- the chain ---------------------------------------------------------------------------


def build_chain(home: Path, plan: ChainPlan, http_port: int, p2p_port: int, signers: int,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Create the source's home and commit the whole chain into its database."""
    if plan.recipients < 1 or plan.senders < 1:
        raise ValueError("the chain needs at least one sender and one recipient")
    started = time.monotonic()
    senders = [KeyPair.from_seed(sender_seed(index)).address for index in range(plan.senders)]
    per_sender = -(-plan.transactions // plan.senders) * (FEE + 1)
    genesis = single_validator_genesis(VALIDATOR.address, CHAIN_ID, Params(),
                                       {address: per_sender + 10**9 for address in senders})
    now_ms = int(time.time() * 1000)
    genesis = dataclasses.replace(genesis, genesis_time=now_ms - (plan.blocks + 10) * BLOCK_INTERVAL_MS)
    init_home(home, genesis=genesis, http=HttpConfig(port=http_port), p2p=P2pConfig(port=p2p_port),
              moniker="source", validator_key=VALIDATOR)
    context = multiprocessing.get_context("fork")  # before the database is opened
    with context.Pool(signers, initializer=_load_senders, initargs=(plan.senders,)) as pool:
        store = ChainStore(home / "data" / "chain.db")
        try:
            tip = store.initialize(genesis)
            last_commit = None
            jobs = ((plan, number) for number in range(plan.blocks))
            for number, raws in enumerate(pool.imap(sign_block, jobs, chunksize=1)):
                transactions = [decode_transaction(raw, genesis.params.max_tx_bytes) for raw in raws]
                result = build_block(store, tip, CHAIN_ID, genesis.params, VALIDATOR.address,
                                     genesis.genesis_time + (number + 1) * BLOCK_INTERVAL_MS, transactions,
                                     last_commit)
                if len(result.transactions) != len(transactions):
                    raise RuntimeError(f"block {number + 1} left out {len(transactions) - len(result.transactions)} "
                                       "transfers")
                last_commit = sign_commit([VALIDATOR], CHAIN_ID, result.block.header.height, 0, result.block.hash)
                tip = store.commit_block(result, last_commit)
                if (number + 1) % 50 == 0:
                    log(f"    block {number + 1}/{plan.blocks} ({time.monotonic() - started:.0f} s)")
        finally:
            store.close()
    seconds = time.monotonic() - started
    return {"height": tip.height, "transactions": plan.transactions, "accounts": plan.accounts,
            "senders": plan.senders, "blocks": plan.blocks, "build_seconds": round(seconds, 1),
            "leveldb_bytes": directory_bytes(home / "data" / "chain.db")}


# --- processes and HTTP ------------------------------------------------------------------


def directory_bytes(path: Path) -> int:
    """Bytes of every file under `path`."""
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def get_json(url: str, timeout: float = 10.0) -> Any:
    """The JSON answer of a GET; raises OSError (urllib's errors included) on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def try_json(url: str) -> Any:
    """`get_json`, or None on any connection or HTTP error (a node starting or syncing)."""
    try:
        return get_json(url)
    except (OSError, ValueError):
        return None


def post_raw(url: str, raw: bytes) -> Any:
    """POST one canonical transaction (`application/msgpack`); the JSON answer."""
    request = urllib.request.Request(url + "/txs", data=raw, method="POST",
                                     headers={"Content-Type": "application/msgpack"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"the source refused the transfer: {error.read()[:300]!r}") from None


def memory_mb(pid: int) -> dict[str, float]:
    """Resident set size now and at its peak (VmHWM), in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


@dataclasses.dataclass
class Node:
    """A node process started by the bench."""

    home: Path
    process: subprocess.Popen[bytes]
    url: str
    started: float
    """`time.monotonic()` just before the process was started."""

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of its log, for an error message."""
        return " | ".join((self.home / "node.log").read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        """RuntimeError if the process ended."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the node in {self.home} exited ({self.process.returncode}): {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_node(home: Path, http_port: int, environment: Mapping[str, str]) -> Node:
    """`marketchain node start --home HOME` with extra environment variables; its log in HOME/node.log."""
    env = {**os.environ, **environment}
    command = [PYTHON, "-m", "cli", "node", "start", "--home", str(home)]
    if PROFILE_VARIABLE in environment:
        command = [PYTHON, "-m", "cProfile", "-o", environment[PROFILE_VARIABLE], "-m", "cli", "node", "start",
                   "--home", str(home)]
    with open(home / "node.log", "ab") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    return Node(home, process, f"http://127.0.0.1:{http_port}", started)


def wait_for(condition: Callable[[], Any], what: str, node: Node, timeout: float = JOIN_DEADLINE_S) -> Any:
    """Poll `condition` every `POLL_S` until it returns a true value; RuntimeError past `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        node.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f} s; {node.log_tail()}")
        time.sleep(POLL_S)


# --- the source and the joiners ----------------------------------------------------------


def start_source(home: Path, http_port: int, height: int, log: Callable[[str], None]) -> tuple[Node, dict[str, Any]]:
    """Start the source node with a snapshot interval of its head height; wait for its
    `/status` and for `GET /snapshots` to list the head's snapshot (None if it serves none)."""
    node = start_node(home, http_port, {"MARKETCHAIN_STATESYNC_SNAPSHOT_INTERVAL": str(height)})
    status = wait_for(lambda: try_json(node.url + "/status"), "the source's /status", node, 600)
    started = time.monotonic()
    listed = wait_for(lambda: _snapshot_listed(node.url, height), "the source's snapshot of its head", node, 1200)
    info = {"snapshot_seconds": round(time.monotonic() - started, 1)}
    if isinstance(listed, dict):
        info["snapshot"] = listed
        snapshot_directory = home / "data" / "snapshots" / str(height)
        if snapshot_directory.is_dir():
            info["snapshot_bytes"] = directory_bytes(snapshot_directory)
        log(f"    snapshot of height {height} listed after {info['snapshot_seconds']} s: {listed}")
    else:
        info["snapshot"] = None
        log("    the source serves no snapshots (GET /snapshots unavailable): state sync skipped")
    return node, {**status, **info}


def _snapshot_listed(url: str, height: int) -> dict[str, Any] | str | None:
    """The `/snapshots` entry of `height`; "absent" if the route does not exist; else None."""
    try:
        listing = get_json(url + "/snapshots")
    except urllib.error.HTTPError as error:
        return "absent" if error.code in (404, 405) else None
    except (OSError, ValueError):
        return None
    for entry in listing.get("snapshots", []):
        if entry.get("height") == height:
            return entry
    return None


def joiner_home(directory: Path, source: dict[str, Any], http_port: int, p2p_port: int) -> Path:
    """A fresh home with the source's genesis and the source as its persistent peer."""
    genesis = read_genesis(Path(source["home"]) / "genesis.json")
    peer = f"{source['node_id']}@127.0.0.1:{source['p2p_port']}"
    init_home(directory, genesis=genesis, http=HttpConfig(port=http_port),
              p2p=P2pConfig(port=p2p_port, persistent_peers=(peer,)), moniker=directory.name)
    return directory


class Follower:
    """Sends the transfers that show a joiner follows the chain (sender 0, its next nonces)."""

    def __init__(self, source_url: str) -> None:
        self.source_url = source_url
        self.address, self._secret = nacl.bindings.crypto_sign_seed_keypair(sender_seed(0))
        self.nonce = get_json(f"{source_url}/accounts/{self.address.hex()}")["pending_nonce"]

    def send(self) -> str:
        """Sign and submit one transfer; its hash (hex)."""
        body = {"chain_id": CHAIN_ID, "fee": FEE, "nonce": self.nonce,
                "payload": {"amount": 1, "to": hashlib.sha256(b"follow" + self.address).digest()},
                "sender": self.address, "type": "transfer"}
        signature = nacl.bindings.crypto_sign(signing_bytes("tx", body), self._secret)[:64]
        raw = codec.encode({**body, "sig": signature})
        post_raw(self.source_url, raw)
        self.nonce += 1
        return hashlib.sha256(raw).hexdigest()


def _committed_height(url: str, tx_hash: str) -> int | None:
    value = try_json(f"{url}/txs/{tx_hash}")
    return value["height"] if value and value.get("status") == "committed" else None


def measure_join(kind: str, node: Node, source: dict[str, Any], follower: Follower,
                 sample: list[bytes]) -> dict[str, Any]:
    """Time `node` (started just now) until it serves correct state and follows the chain."""
    target = source["height"]
    phases: dict[str, float] = {}
    progress: dict[str, Any] = {}

    def elapsed() -> float:
        return round(time.monotonic() - node.started, 2)

    def ready() -> bool:
        status = try_json(node.url + "/status")
        if status is None:
            return False
        phases.setdefault("http_up_s", elapsed())
        if status.get("syncing") == "state":
            phases.setdefault("state_sync_seen_s", elapsed())
            phase = (status.get("state_sync") or {}).get("phase")  # discovering, verifying, fetching, …
            phases.setdefault(f"{phase}_from_s", elapsed())
            if status.get("chunks"):
                progress["chunks"] = status["chunks"]
                if not str(status["chunks"]).startswith("0/"):
                    phases.setdefault("first_chunk_s", elapsed())
        elif "state_sync_seen_s" in phases:
            phases.setdefault("state_restored_s", elapsed())
        return status["height"] >= target and not status.get("syncing")

    wait_for(ready, f"{kind}: height {target}, not syncing", node)
    phases["caught_up_s"] = elapsed()
    for address in sample:
        mine = get_json(f"{node.url}/accounts/{address.hex()}")
        theirs = get_json(f"{source['url']}/accounts/{address.hex()}")
        fields = ("balance", "nonce", "roles")
        if any(mine[field] != theirs[field] for field in fields):
            raise RuntimeError(f"{kind}: account {address.hex()} differs: {mine} vs the source's {theirs}")
    phases["state_checked_s"] = elapsed()
    tx_hash = follower.send()
    height = wait_for(lambda: _committed_height(source["url"], tx_hash), f"{kind}: the source's new block", node, 120)
    wait_for(lambda: _committed_height(node.url, tx_hash), f"{kind}: the new block {height} on the joiner", node, 300)
    phases["following_s"] = elapsed()
    address = sample[0].hex()
    mine = get_json(f"{node.url}/accounts/{address}/proof?height={height}")
    theirs = get_json(f"{source['url']}/accounts/{address}/proof?height={height}")
    if mine != theirs:
        raise RuntimeError(f"{kind}: the proofs at height {height} differ: {mine} vs the source's {theirs}")
    seconds = elapsed()
    result = {"seconds": seconds, "phases": phases, "target_height": target, "followed_to_height": height,
              **memory_mb(node.process.pid), "log_lines": _phase_lines(node.home / "node.log")}
    return {**result, **({"chunks": progress["chunks"]} if progress else {})}


def _phase_lines(log: Path, limit: int = 20) -> list[str]:
    """The joiner's log lines about state sync (discovery, chunks, restore, finish), if any."""
    words = ("state sync", "state-sync", "snapshot", "restore", "manifest", "chunks")
    lines = [line for line in log.read_text(errors="replace").splitlines()
             if any(word in line.lower() for word in words)]
    return lines[:limit // 2] + lines[-(limit // 2):] if len(lines) > limit else lines


def join(kind: str, directory: Path, source: dict[str, Any], follower: Follower, sample: list[bytes],
         environment: Mapping[str, str]) -> dict[str, Any]:
    """Start a fresh joiner (`kind`: block or state), measure it, always stop it."""
    ports = harness_ports.free_base_port(2, source["http_port"] + 10)
    shutil.rmtree(directory / f"{kind}-sync", ignore_errors=True)  # a kept work directory's earlier joiner
    home = joiner_home(directory / f"{kind}-sync", source, ports + 1, ports)
    head = {**source, "height": get_json(source["url"] + "/status")["height"]}  # earlier joiners' transfers too
    node = start_node(home, ports + 1, environment)
    try:
        return measure_join(f"{kind} sync", node, head, follower, sample)
    finally:
        node.stop()


# --- the whole run -----------------------------------------------------------------------


def run(work: Path, plan: ChainPlan, signers: int = 2, profile_joiner: Path | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the chain, start the source, measure block sync then state sync."""
    work.mkdir(parents=True, exist_ok=True)
    base = harness_ports.free_base_port(2)
    home = work / "source"
    log(f"  building {plan.transactions} transfers over {plan.accounts} accounts in {plan.blocks} blocks …")
    built = work / "chain.json"  # a kept work directory (--keep) reuses its chain: it is the slow part
    if built.exists() and json.loads(built.read_text())["plan"] == dataclasses.asdict(plan):
        chain = json.loads(built.read_text())["chain"]
        base = chain["p2p_port"]
        log("    reused from an earlier run (its source has a few more blocks)")
    else:
        chain = {**build_chain(home, plan, base + 1, base, signers, log), "p2p_port": base}
        built.write_text(json.dumps({"plan": dataclasses.asdict(plan), "chain": chain}))
    results: dict[str, Any] = {"chain": chain}
    log(f"    built in {results['chain']['build_seconds']} s")
    store = ChainStore(home / "data" / "chain.db")
    head = store.head()
    store.close()
    assert head is not None
    source_node, status = start_source(home, base + 1, head.height, log)
    try:
        source = {**status, "home": str(home), "url": source_node.url, "http_port": base + 1, "p2p_port": base,
                  "height": head.height}
        results["source"] = {key: status[key] for key in ("snapshot", "snapshot_seconds", "snapshot_bytes")
                             if key in status}
        follower = Follower(source_node.url)
        step = max(1, plan.recipients // SAMPLE_ACCOUNTS)
        sample = [recipient_address(index) for index in range(0, plan.recipients, step)][:SAMPLE_ACCOUNTS]
        sample.append(follower.address)
        log("  block sync by a fresh node …")
        results["block_sync"] = _attempt(lambda: join("block", work, source, follower, sample, {}), log)
        if status.get("snapshot"):
            environment = {"MARKETCHAIN_STATESYNC_ENABLE": "true"}
            if profile_joiner is not None:
                environment[PROFILE_VARIABLE] = str(profile_joiner)
            log("  state sync by a fresh node …")
            results["state_sync"] = _attempt(lambda: join("state", work, source, follower, sample, environment), log)
        else:
            results["state_sync"] = {"error": "the source wrote no snapshot (GET /snapshots did not list its head)"}
    finally:
        source_node.stop()
    block, state = results["block_sync"], results["state_sync"]
    if "seconds" in block and "seconds" in state:
        results["time_ratio"] = round(state["seconds"] / block["seconds"], 3)
    return results


def _attempt(step: Callable[[], dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
    """Run one join; a failure is reported as `{"error"}`, never ends the run."""
    try:
        result = step()
    except (RuntimeError, OSError, ValueError) as error:
        log(f"    FAILED: {error}")
        return {"error": str(error)}
    log(f"    {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB, phases {result['phases']}")
    return result


def rows(results: dict[str, Any], yardstick: float) -> list[list[str]]:
    """Lines of bench/run.py's table (scenario, rate, × Ed25519, p50, p95, p99, target, status)."""
    chain = results.get("chain", {})
    size = f"{chain.get('transactions', 0):,} txs / {chain.get('accounts', 0):,} accounts"
    lines = []
    block, state = results.get("block_sync", {}), results.get("state_sync", {})
    if "seconds" in block:
        rate = chain["transactions"] / block["seconds"]
        lines.append([f"block sync to following, {size}", f"{block['seconds']} s ({rate:.0f} tx/s)",
                      f"{rate / yardstick:.3f}", "", "", "", "", ""])
        lines.append([f"block sync peak RSS, {size}", f"{block['peak_rss_mb']} MB", "", "", "", "", "", ""])
    if "seconds" in state:
        ratio = results.get("time_ratio")
        status = "" if ratio is None else ("met" if ratio <= TIME_TARGET else "MISSED")
        shown = "" if ratio is None else f" ({100 * ratio:.1f} % of block sync)"
        lines.append([f"state sync to following, {size}", f"{state['seconds']} s{shown}", "", "", "", "",
                      f"<= {100 * TIME_TARGET:.0f} % of block sync", status])
        lines.append([f"state sync peak RSS (VmHWM), {size}", f"{state['peak_rss_mb']} MB", "", "", "", "",
                      f"<= {RSS_TARGET_MB} MB", "met" if state["peak_rss_mb"] <= RSS_TARGET_MB else "MISSED"])
    elif "error" in state:
        lines.append([f"state sync, {size}", "FAILED", "", "", "", "", f"<= {100 * TIME_TARGET:.0f} %", "MISSED"])
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain-txs", type=int, default=1_000_000, help="transfers in the chain")
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts in its state (senders + recipients)")
    parser.add_argument("--senders", type=int, default=1000, help="accounts that send the transfers")
    parser.add_argument("--block-txs", type=int, default=4000, help="transfers per block")
    parser.add_argument("--signers", type=int, default=2, help="worker processes signing the transfers")
    parser.add_argument("--profile-joiner", action="store_true",
                        help="run the state-sync joiner under cProfile (bench/results/state_sync_joiner.prof)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the node homes here")
    parser.add_argument("--out", type=Path, default=RESULTS / "state_sync.json")
    arguments = parser.parse_args()
    plan = ChainPlan(arguments.chain_txs, arguments.accounts, arguments.senders, arguments.block_txs)
    yardstick_start = state_machine.ed25519_rate()
    print(f"yardstick: {yardstick_start:.0f} Ed25519 verifications/s on one core", flush=True)
    work = Path(tempfile.mkdtemp(prefix="marketchain-statesync-")) if arguments.keep is None else arguments.keep
    work.mkdir(parents=True, exist_ok=True)
    profile = RESULTS / "state_sync_joiner.prof" if arguments.profile_joiner else None
    try:
        results = run(work, plan, arguments.signers, profile, lambda line: print(line, flush=True))
    finally:
        if arguments.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    yardstick_end = state_machine.ed25519_rate()
    yardstick = max(yardstick_start, yardstick_end)
    print(f"\nEd25519 on one core: {yardstick:.0f}/s (start {yardstick_start:.0f}, end {yardstick_end:.0f})")
    for line in rows(results, yardstick):
        print("  ".join(cell for cell in line if cell))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps({"ed25519_verifications_per_second": {
        "start": round(yardstick_start), "end": round(yardstick_end), "used": round(yardstick)},
        "results": results}, indent=2) + "\n")
    print(f"\nwritten to {arguments.out}")


if __name__ == "__main__":
    main()
