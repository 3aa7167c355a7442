"""Shared parts of the HTTP API tests on a real node (test_node_http.py,
test_node_http_reads.py): funded test keys, the genesis funding, transfers and checks.

Every test that sends transactions uses its own genesis-funded sender, and leaves nothing
pending behind it, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import (
    NodeProcess,
    is_error_body,
    wait_until,
)

MIN_FEE = 10
FUNDED = 10_000_000
"""µMKT of every genesis-funded test account (10 MKT)."""
POOR_BALANCE = 1_000
UNTOUCHED_BALANCE = 123_456_789
MAX_TX_BYTES = 16384
DEFAULT_MAX_BODY = 8 * 1024 * 1024

SENDERS = (
    "msgpack",
    "json",
    "stale",
    "window",
    "duplicate",
    "batch_msgpack",
    "batch_json",
    "proof_a",
    "proof_b",
    "proof_c",
    "proof_pending",
    "blocks",
    "idle",
    "admission",
)
"""One funded sender per test that moves money."""


def key(name: str) -> KeyPair:
    """A deterministic test key."""
    return KeyPair.from_seed(hashlib.sha256(b"test_node_http/" + name.encode()).digest())


RECIPIENT = key("recipient")
POOR = key("poor")
UNTOUCHED = key("untouched")
UNFUNDED = key("unfunded")


def funding() -> dict[bytes, int]:
    """Genesis balances of the module's node: every test sender, the poor and the untouched."""
    fund: dict[bytes, int] = {key(name).address: FUNDED for name in SENDERS}
    fund[POOR.address] = POOR_BALANCE
    fund[UNTOUCHED.address] = UNTOUCHED_BALANCE
    return fund


def node_fixtures(directory_name: str) -> tuple[Callable[..., Iterator[NodeProcess]], Callable[..., str]]:
    """The module-scoped fixtures `node` (a real node process in a fresh temporary directory
    `directory_name`, funded by `funding()`) and `chain_id` (its chain's id), for a test
    module to take as `node, chain_id = node_fixtures("http")`."""

    @pytest.fixture(scope="module")
    def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
        with NodeProcess(tmp_path_factory.mktemp(directory_name) / "node", fund=funding()) as running:
            yield running

    @pytest.fixture(scope="module")
    def chain_id(node: NodeProcess) -> str:
        return node.status()["chain_id"]

    return node, chain_id


def transfer(
    chain_id: str,
    sender: KeyPair,
    nonce: int,
    amount: int = 1_000,
    fee: int = MIN_FEE,
    to: bytes = RECIPIENT.address,
    **payload: Any,
) -> Transaction:
    """A signed transfer."""
    return sign_transaction(sender, chain_id, "transfer", {"to": to, "amount": amount, **payload}, nonce, fee)


def next_nonce(node: NodeProcess, sender: KeyPair) -> int:
    """The nonce the sender's next transaction should carry."""
    return node.account(sender.address)["pending_nonce"]


def commit(node: NodeProcess, tx: Transaction) -> dict[str, Any]:
    """Submit and wait until final; the committed view."""
    assert node.submit(tx.raw) == tx.hash.hex()
    return node.wait_for_tx(tx.hash.hex())


def ensure_blocks(node: NodeProcess, chain_id: str, count: int) -> int:
    """Make blocks (one transfer each) until the chain holds at least `count`; the height."""
    sender = key("blocks")
    while node.height() < count:
        commit(node, transfer(chain_id, sender, next_nonce(node, sender), amount=1))
    return node.height()


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, (status, body)
    assert is_error_body(body), body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body


def assert_serving(node: NodeProcess) -> None:
    assert node.running, node.describe("the node died")
    node.status()


def assert_nothing_pending(node: NodeProcess) -> None:
    wait_until(lambda: node.status()["mempool_size"] == 0, node.timeout, "empty mempool")


