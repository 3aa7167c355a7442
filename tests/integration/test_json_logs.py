"""Issue 12 point 6: a node's JSON logs carry their values as keys, not only inside
`message` (node/logging_setup.py `log_fields`), and plain lines stay as they were."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import NodeProcess

pytestmark = pytest.mark.integration

SENDER = KeyPair.from_seed(hashlib.sha256(b"test_json_logs/sender").digest())


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_a_json_node_log_has_events_with_their_fields(tmp_path: Path) -> None:
    config = {"log": {"format": "json"}}
    with NodeProcess(tmp_path / "node", fund={SENDER.address: 1_000_000}, params={"min_fee": 10},
                     config=config) as node:
        chain_id = node.status()["chain_id"]
        tx = sign_transaction(SENDER, chain_id, "transfer", {"to": SENDER.address, "amount": 1}, 0, 10)
        view = node.wait_for_tx(node.submit(tx.raw))
        node.stop()
    lines = json_lines(node.log_path)
    by_event = {line["event"]: line for line in lines if "event" in line}
    started = by_event["node_started"]
    assert started["height"] == 0 and started["chain_id"] == chain_id and started["http_port"] == node.http_port
    finals = [line for line in lines if line.get("event") == "block_final"]
    final = next(line for line in finals if line["height"] == view["height"])
    assert final["txs"] == 1 and final["block"].startswith(final["message"].split()[2])
    assert final["message"] == f"final {final['height']} {final['block'][:16]} round={final['round']} txs=1"
    assert by_event["node_stopped"]["moniker"] == started["moniker"]


def test_plain_node_logs_do_not_repeat_the_fields(tmp_path: Path) -> None:
    with NodeProcess(tmp_path / "node", fund={SENDER.address: 1_000_000}, params={"min_fee": 10}) as node:
        chain_id = node.status()["chain_id"]
        tx = sign_transaction(SENDER, chain_id, "transfer", {"to": SENDER.address, "amount": 1}, 0, 10)
        node.wait_for_tx(node.submit(tx.raw))
    text = node.log_path.read_text()
    assert re.search(r" INFO marketchain\.consensus: final \d+ [0-9a-f]{16} round=\d+ txs=1\n", text)
    assert "event=" not in text
