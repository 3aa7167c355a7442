"""Crash and restart of a real node under load (PROTOCOL R25 finality, §11 clean stop).

A final block is final: after `kill -9` in the middle of a stream of transactions,
the restarted node must hold every block it had reported as final, byte for byte,
with a consistent head and state, and carry on making blocks. A SIGTERM stop exits
with code 0 and restarts at the same height and state root.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from marketplace_tx.chain.block import decode_block
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import NodeProcess, http_get, http_post, wait_until

pytestmark = pytest.mark.integration

MIN_FEE = 10
LOAD_FUNDS = 1_000_000_000
PROBE_FUNDS = 1_000_000
BATCH_SIZE = 20
KILL_CYCLES = 3
NEW_BLOCKS_BEFORE_KILL = 5


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_node_restart/" + name.encode()).digest())


LOAD_KEYS = tuple(key(f"load{index}") for index in range(3))
PROBE = key("probe")


def transfer(chain_id: str, sender: KeyPair, nonce: int, to: bytes, amount: int) -> Transaction:
    return sign_transaction(sender, chain_id, "transfer", {"to": to, "amount": amount}, nonce, MIN_FEE)


def funded_node(home) -> NodeProcess:
    fund = {load.address: LOAD_FUNDS for load in LOAD_KEYS}
    fund[PROBE.address] = PROBE_FUNDS
    return NodeProcess(home, fund=fund)


@dataclass
class TransferLoad:
    """A background thread that keeps batches of valid transfers flowing into a node.

    Each round reads every sender's `pending_nonce` and posts one `/txs/batch` per
    sender. Transfers go between the load accounts only, so the sum of their balances
    and the validator's is conserved. Connection failures (the node being killed or
    restarted) are counted and retried. `pause()` holds the load between two batches.
    """

    node: NodeProcess
    chain_id: str
    accepted: int = 0
    connection_errors: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    stop_event: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None
    _running: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="transfer-load", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Hold the load once its current batch is sent."""
        self._running.clear()
        wait_until(lambda: self._idle.is_set() or self.failure is not None, 60, "the load pauses")

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self.stop_event.set()
        self._running.set()
        assert self._thread is not None
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the load thread did not stop"
        if self.failure is not None:
            raise AssertionError(f"the load thread failed: {self.failure!r}") from self.failure

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                for position, sender in enumerate(LOAD_KEYS):
                    if not self._running.is_set():
                        self._idle.set()
                        self._running.wait()
                        self._idle.clear()
                    if self.stop_event.is_set():
                        return
                    recipient = LOAD_KEYS[(position + 1) % len(LOAD_KEYS)].address
                    try:
                        self._send_batch(sender, recipient)
                    except (OSError, http.client.HTTPException):
                        self.connection_errors += 1
                        self.stop_event.wait(0.05)
        except BaseException as error:  # reported by stop()
            self.failure = error

    def _send_batch(self, sender: KeyPair, recipient: bytes) -> None:
        status, account = http_get(f"{self.node.url}/accounts/{sender.address.hex()}", timeout=10)
        if status != 200:
            raise AssertionError(f"GET /accounts answered {status}: {account!r}")
        nonce = account["pending_nonce"]
        batch = [
            transfer(self.chain_id, sender, nonce + offset, recipient, 1 + offset).raw
            for offset in range(BATCH_SIZE)
        ]
        status, body = http_post(f"{self.node.url}/txs/batch", codec.encode(batch), timeout=10)
        if status != 200:
            raise AssertionError(f"POST /txs/batch answered {status}: {body!r}")
        for result in body["results"]:
            if "hash" in result:
                self.accepted += 1
            else:
                self.rejected[result["error"]["code"]] += 1


@dataclass
class BlockRecord:
    """A block the node reported as final."""

    hash: str
    header: dict[str, Any]
    raw: bytes


def record_new_blocks(node: NodeProcess, recorded: dict[int, BlockRecord]) -> int:
    """Page `/blocks` from the tip down to what is already recorded; the highest height."""
    query = "/blocks?limit=100"
    highest = 0
    while True:
        page = node.get_ok(query)
        reached_known = False
        for view in page["blocks"]:
            height = view["height"]
            highest = max(highest, height)
            if height in recorded:
                assert recorded[height].hash == view["hash"], f"block {height} changed"
                reached_known = True
                continue
            raw = node.get_ok(f"/blocks/{height}/raw")
            assert decode_block(raw, len(raw)).hash.hex() == view["hash"]
            recorded[height] = BlockRecord(view["hash"], view["header"], raw)
        if reached_known or page["next"] is None:
            return highest
        query = f"/blocks?before={page['next']}&limit=100"


def check_chain(node: NodeProcess, recorded: dict[int, BlockRecord], genesis_hash: str) -> int:
    """Every recorded block is there unchanged, and the chain links up to the head.

    Works while blocks are being added: the head is read first, the pages after it.
    """
    status = node.status()
    assert recorded, "nothing was recorded"
    assert status["height"] >= max(recorded), node.describe(
        f"height {status['height']} is below the recorded {max(recorded)}"
    )
    views: dict[int, dict[str, Any]] = {}
    query = "/blocks?limit=100"
    while True:
        page = node.get_ok(query)
        for view in page["blocks"]:
            views[view["height"]] = view
        if page["next"] is None:
            break
        query = f"/blocks?before={page['next']}&limit=100"
    tip = max(views)
    assert sorted(views) == list(range(1, tip + 1)), "a height is missing after the restart"
    for height, record in recorded.items():
        view = views[height]
        assert view["hash"] == record.hash, node.describe(f"block {height} changed after the crash")
        assert view["header"] == record.header
        assert node.get_ok(f"/blocks/{height}/raw") == record.raw, f"raw block {height} changed"
    previous = genesis_hash
    for height in range(1, tip + 1):
        assert views[height]["header"]["prev_hash"] == previous, f"block {height} does not link"
        assert views[height]["commit"]["block_hash"] == views[height]["hash"]
        previous = views[height]["hash"]
    head = views[status["height"]]
    assert status["latest_block_hash"] == head["hash"]
    assert status["latest_block_time"] == head["header"]["time"]
    assert status["state_root"] == head["header"]["state_root"]
    return tip


def total_balance(node: NodeProcess) -> int:
    """Balances of every account that can hold money in these tests (R17).

    Read between two equal heights, so that no block falls between the reads.
    """
    addresses = [load.address for load in LOAD_KEYS] + [PROBE.address, node.validator_key.address]

    def snapshot() -> tuple[int] | None:
        height = node.height()
        total = sum(node.account(address)["balance"] for address in addresses)
        return (total,) if node.height() == height else None

    return wait_until(snapshot, node.timeout, "a quiet moment to read the balances")[0]


def chain_facts(node: NodeProcess) -> tuple[str, str, int]:
    """`(chain_id, genesis_hash, total balance)` of a node before a test disturbs it."""
    status = node.status()
    return status["chain_id"], status["genesis_hash"], total_balance(node)


@contextmanager
def running_load(node: NodeProcess, chain_id: str) -> Iterator[TransferLoad]:
    """A `TransferLoad` on `node`, started, and stopped on leaving the block."""
    load = TransferLoad(node, chain_id)
    load.start()
    try:
        yield load
    finally:
        load.stop()


def probe_transaction(node: NodeProcess, chain_id: str, amount: int) -> dict[str, Any]:
    """A fresh transaction from an account the load does not use; waits until final."""
    nonce = node.account(PROBE.address)["pending_nonce"]
    tx = transfer(chain_id, PROBE, nonce, LOAD_KEYS[0].address, amount)
    view = node.wait_for_tx(node.submit(tx.raw))
    assert view["result"]["ok"] is True, view
    return view


def test_kill_9_under_load_loses_no_final_block(tmp_path) -> None:
    recorded: dict[int, BlockRecord] = {}
    with funded_node(tmp_path / "node") as node:
        chain_id, genesis_hash, supply = chain_facts(node)
        with running_load(node, chain_id) as load:
            for cycle in range(KILL_CYCLES):
                start_height = node.height()
                wait_until(
                    lambda start=start_height: record_new_blocks(node, recorded)
                    >= start + NEW_BLOCKS_BEFORE_KILL,
                    node.timeout,
                    lambda cycle=cycle: node.describe(f"cycle {cycle}: {NEW_BLOCKS_BEFORE_KILL} new blocks"),
                )
                accepted_before = load.accepted
                wait_until(lambda before=accepted_before: load.accepted > before, node.timeout,
                           "the load is still running")
                node.kill()
                node.start()
                check_chain(node, recorded, genesis_hash)
                load.pause()
                assert total_balance(node) == supply, "money appeared or vanished across the crash"
                view = probe_transaction(node, chain_id, amount=cycle + 1)
                assert view["height"] > max(recorded), "the chain goes on after the restart"
                load.resume()
                record_new_blocks(node, recorded)
        assert load.accepted > 0
        assert set(load.rejected) <= {"bad_nonce", "duplicate"}, load.rejected
        record_new_blocks(node, recorded)
        check_chain(node, recorded, genesis_hash)
        probe_transaction(node, chain_id, amount=KILL_CYCLES + 1)
        assert total_balance(node) == supply
    assert len(recorded) >= KILL_CYCLES * NEW_BLOCKS_BEFORE_KILL


def test_sigterm_stops_cleanly_and_restarts_at_the_same_state(tmp_path) -> None:
    with funded_node(tmp_path / "node") as node:
        chain_id = node.status()["chain_id"]
        for amount in (1, 2, 3):
            probe_transaction(node, chain_id, amount)
        before = node.status()
        probe = node.account(PROBE.address)
        node.stop()  # asserts exit code 0
        assert "stopped" in node.log_tail(5)
        node.start()
        after = node.status()
        for name in ("height", "latest_block_hash", "latest_block_time", "state_root", "genesis_hash"):
            assert after[name] == before[name], name
        assert node.account(PROBE.address) == probe
        view = probe_transaction(node, chain_id, 4)
        assert view["height"] == before["height"] + 1
        assert node.get_ok(f"/blocks/{view['height']}")["header"]["prev_hash"] == before["latest_block_hash"]


def test_sigterm_under_load_exits_cleanly(tmp_path) -> None:
    recorded: dict[int, BlockRecord] = {}
    with funded_node(tmp_path / "node") as node:
        chain_id, genesis_hash, supply = chain_facts(node)
        with running_load(node, chain_id):
            wait_until(lambda: record_new_blocks(node, recorded) >= NEW_BLOCKS_BEFORE_KILL,
                       node.timeout, lambda: node.describe("blocks under load"))
            node.stop()  # asserts exit code 0 although requests are in flight
        node.start()
        check_chain(node, recorded, genesis_hash)
        assert total_balance(node) == supply
        probe_transaction(node, chain_id, 5)
