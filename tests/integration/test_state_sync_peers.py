"""A node joins by state sync over real P2P on loopback (PROTOCOL R37, R39), then follows.

One validator writes a snapshot every `INTERVAL` heights; a fresh node initialized with
`marketchain init --genesis … --state-sync` and the validator as its peer restores the
newest snapshot (header verified from its genesis), then block-syncs the rest and follows
new blocks, agreeing with the validator on the state. While a joiner has no snapshot yet,
its API answers 503 `syncing` for reads of the state and `/status` says `"syncing": "state"`.
(The 4-validator testnet with hostile peers and kill -9 is tests/e2e's.)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import REPO_ROOT, NodeProcess, edit_config, free_port, wait_until

INTERVAL = 4
"""`[statesync] snapshot_interval` of the validator."""
SENDER = KeyPair.from_seed(hashlib.sha256(b"test_state_sync_peers/sender").digest())
RECIPIENT = KeyPair.from_seed(hashlib.sha256(b"test_state_sync_peers/recipient").digest())
DEADLINE = 180.0
"""Generous: a loaded 2-core machine."""


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A one-validator chain that writes snapshots, a few blocks past the first one."""
    node = NodeProcess(tmp_path_factory.mktemp("state_sync_peers") / "validator", fund={SENDER.address: 10**9},
                       config={"statesync": {"snapshot_interval": INTERVAL}}, timeout=DEADLINE)
    with node:
        while node.height() < INTERVAL + 2:
            transfer(node)
        wait_until(lambda: node.get_ok("/snapshots")["snapshots"], DEADLINE,
                   lambda: node.describe("a snapshot written"))
        yield node


def transfer(node: NodeProcess) -> dict[str, Any]:
    """One transfer from SENDER, committed."""
    status = node.status()
    nonce = node.account(SENDER.address)["pending_nonce"]
    tx = sign_transaction(SENDER, status["chain_id"], "transfer", {"to": RECIPIENT.address, "amount": 1},
                          nonce, status["min_fee"])
    node.submit(tx.raw)
    return node.wait_for_tx(tx.hash.hex())


def joiner_home(directory: Path, validator: NodeProcess, peers: list[str], **statesync: Any) -> Path:
    """`marketchain init --genesis (the validator's) --state-sync`, peered with `peers`."""
    home = directory / "joiner"
    completed = subprocess.run(
        [sys.executable, "-m", "cli", "init", "--home", str(home), "--genesis", str(validator.home / "genesis.json"),
         "--http-port", str(free_port()), "--p2p-port", str(free_port()), "--state-sync"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    edit_config(home, {"p2p": {"persistent_peers": peers},
                       "statesync": {"discovery_time_s": 1, "chunk_request_timeout_s": 3, **statesync}})
    return home


def test_a_joiner_without_a_snapshot_serves_status_and_refuses_state_reads(
        validator: NodeProcess, tmp_path: Path) -> None:
    home = joiner_home(tmp_path, validator, [], discovery_timeout_s=600)
    with NodeProcess(home, timeout=DEADLINE) as joiner:
        status = joiner.status()
        assert status["syncing"] == "state" and status["chunks"] == "0/0", status
        assert status["state_sync"]["phase"] == "discovering"
        for path in (f"/accounts/{SENDER.address.hex()}", "/blocks/1", "/shops", "/light/changes?after=0"):
            code, body = joiner.get(path)
            assert code == 503 and body["error"]["code"] == "syncing", (path, code, body)
            assert "state sync" in body["error"]["message"]
        code, body = joiner.post("/txs", b"\x80", "application/msgpack")
        assert code == 503 and body["error"]["code"] == "syncing", body
        code, metrics = joiner.get("/metrics")
        assert code == 200 and "marketchain_statesync_chunks_total" in str(metrics)
        assert joiner.get("/openapi.json")[0] == 200


def test_a_fresh_node_joins_from_a_verified_snapshot_and_follows(validator: NodeProcess, tmp_path: Path) -> None:
    snapshot = validator.get_ok("/snapshots")["snapshots"][0]
    peer = f"{validator.node_id}@127.0.0.1:{validator.p2p_port}"
    with NodeProcess(joiner_home(tmp_path, validator, [peer]), timeout=DEADLINE) as joiner:
        def caught_up() -> dict[str, Any] | None:
            joiner.check(joiner.running, "the joiner died")
            status = joiner.status()
            head = validator.height()
            return status if status["syncing"] is False and status["height"] >= head else None

        status = wait_until(caught_up, DEADLINE, lambda: joiner.describe("state sync and catch-up"))
        assert status["height"] >= snapshot["height"]
        log = joiner.log_path.read_text()
        assert f"restoring height {snapshot['height']}" in log or "restoring height" in log, joiner.log_tail()
        committed = transfer(validator)  # a new block: the joiner follows it
        joiner.wait_for_height(committed["height"])
        for address in (SENDER.address, RECIPIENT.address):
            mine, theirs = joiner.account(address), validator.account(address)
            assert (mine["balance"], mine["nonce"]) == (theirs["balance"], theirs["nonce"])
        assert joiner.get_ok(f"/blocks/{committed['height']}")["hash"] == committed["block_hash"]
        assert joiner.status()["state_root"] == validator.status()["state_root"]
        code, body = joiner.get("/blocks/1")
        assert code == 410 and body["error"]["code"] == "pruned", (code, body)  # never had it (R40)
