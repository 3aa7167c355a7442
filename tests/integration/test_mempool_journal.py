"""Issue 12 point 4, the node's half: nothing accepted is lost. A node journals the
transactions it admits (node/mempool_journal.py, `HOME/data/mempool.journal`) and admits
them again when it starts, so that a pending transaction survives `kill -9` and a clean
restart of every node and becomes final without anyone sending it again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.cli_testnet import cli
from tests.e2e.node_process import NodeProcess, free_base_port, wait_until

pytestmark = pytest.mark.integration

MIN_FEE = 10
JOURNAL_WINDOW_S = 1.5
"""A transaction accepted by the node is in its journal within about a second (docs/operations.md)."""


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_mempool_journal/" + name.encode()).digest())


SENDER, OTHER, RECIPIENT = key("sender"), key("other"), key("recipient")


def transfer(chain_id: str, sender: KeyPair, nonce: int, amount: int) -> Transaction:
    return sign_transaction(sender, chain_id, "transfer", {"to": RECIPIENT.address, "amount": amount}, nonce, MIN_FEE)


def journal_holds(home: Path, raw: bytes) -> bool:
    path = home / "data" / "mempool.journal"
    return path.exists() and raw in path.read_bytes()


def pending(node: NodeProcess, tx_hash: str) -> bool:
    status, body = node.get(f"/txs/{tx_hash}")
    return status == 200 and body["status"] == "pending"


def test_a_pending_transaction_survives_kill_and_restart_and_becomes_final(tmp_path: Path) -> None:
    """One node; the transaction waits for its sender's earlier nonce, so it cannot be final
    yet. After `kill -9`, then a clean stop, the node still holds it (from its journal); once
    the gap is filled it is final. A journaled transaction that became final meanwhile is
    dropped at start with a log line."""
    fund = {SENDER.address: 1_000_000, OTHER.address: 1_000_000}
    with NodeProcess(tmp_path / "node", fund=fund, params={"min_fee": MIN_FEE}) as node:
        chain_id = node.status()["chain_id"]
        waiting = transfer(chain_id, SENDER, 1, 5)  # nonce 0 is missing: not ready
        final = transfer(chain_id, OTHER, 0, 7)
        waiting_hash = node.submit(waiting.raw)
        node.wait_for_tx(node.submit(final.raw))
        assert pending(node, waiting_hash)
        started = time.monotonic()
        wait_until(lambda: journal_holds(node.home, waiting.raw), JOURNAL_WINDOW_S * 4,
                   lambda: node.describe("the transaction in the journal"))
        assert time.monotonic() - started < JOURNAL_WINDOW_S * 4

        node.kill()  # SIGKILL: whatever was appended is all there is
        # `final` is in the journal unless the rewrite after start (a background thread, late on
        # a loaded machine) ran after it was committed; either way the start reads this file.
        refused = "duplicate 1" if journal_holds(node.home, final.raw) else "none refused"
        node.start()
        node.check(pending(node, waiting_hash), "the journaled transaction is pending again after kill -9")
        line = f"mempool journal: 1 transactions admitted again, 0 expired, refused: {refused}"
        wait_until(lambda: line in node.log_tail(40), JOURNAL_WINDOW_S * 4, lambda: node.describe(line))  # logged
        # once every journaled transaction was offered again, just after `waiting` is pending
        _, metrics = node.get("/metrics")
        text = metrics.decode() if isinstance(metrics, bytes) else metrics
        assert "marketchain_mempool_journal_readmitted_total 1.0" in text
        assert "marketchain_mempool_journal_bytes" in text

        node.restart()  # SIGTERM: the journal is rewritten with what is pending, then read again
        node.check(pending(node, waiting_hash), "the journaled transaction is pending again after a clean stop")
        line = "mempool journal: 1 transactions admitted again, 0 expired, refused: none refused"
        wait_until(lambda: line in node.log_tail(40), JOURNAL_WINDOW_S * 4, lambda: node.describe(line))

        node.submit(transfer(chain_id, SENDER, 0, 3).raw)  # fills the gap: nobody sends `waiting` again
        view = node.wait_for_tx(waiting_hash)
        assert view["result"]["ok"] is True


def test_without_the_journal_a_restart_forgets_the_mempool(tmp_path: Path) -> None:
    fund = {SENDER.address: 1_000_000}
    config = {"mempool": {"journal": False}}
    with NodeProcess(tmp_path / "node", fund=fund, params={"min_fee": MIN_FEE}, config=config) as node:
        chain_id = node.status()["chain_id"]
        waiting_hash = node.submit(transfer(chain_id, SENDER, 1, 5).raw)
        time.sleep(JOURNAL_WINDOW_S)
        node.restart()
        assert node.get(f"/txs/{waiting_hash}")[0] == 404
        assert not (node.home / "data" / "mempool.journal").exists()


def test_a_pending_transfer_survives_a_crash_of_every_node(tmp_path: Path) -> None:
    """The issue's scenario: a 2-validator testnet with one validator down cannot make
    blocks; a transfer is accepted (`--no-wait`: the CLI does not send it again); every node
    is killed and the testnet started again; the transfer becomes final."""
    net = tmp_path / "net"
    cli("testnet", "start", "--nodes", "2", "--home", str(net), "--base-port", str(free_base_port(4)), "-q")
    try:
        nodes = json.loads((net / "testnet.json").read_text())["nodes"]
        os.kill(nodes[1]["pid"], signal.SIGKILL)  # 1 of 2 validators: no quorum, nothing becomes final
        sent = cli("tx", "transfer", "--key", str(net / "accounts" / "alice.json"),
                   "--to", str(net / "accounts" / "bob.json"), "--amount", "3MKT", "--node", nodes[0]["http"],
                   "--no-wait", "--json")
        tx_hash = json.loads(sent.stdout)["hash"]
        time.sleep(JOURNAL_WINDOW_S)  # the journal's window (docs/operations.md)
        os.kill(nodes[0]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(row["running"] for row in json.loads(cli("testnet", "status", "--home", str(net), "--json").stdout)):
            assert time.monotonic() < deadline, "the killed nodes still run"
            time.sleep(0.2)
        cli("testnet", "start", "--home", str(net), "-q")
        nodes = json.loads((net / "testnet.json").read_text())["nodes"]
        deadline = time.monotonic() + 120
        while True:
            answer = cli("query", "tx", tx_hash, "--node", nodes[0]["http"], "--json", check=False)
            if answer.returncode == 0 and json.loads(answer.stdout)["status"] == "committed":
                break
            assert time.monotonic() < deadline, f"{tx_hash} not final after the restart:\n{answer.stdout}{answer.stderr}"
            time.sleep(0.5)
        assert json.loads(answer.stdout)["result"]["ok"] is True
    finally:
        cli("testnet", "stop", "--home", str(net))
