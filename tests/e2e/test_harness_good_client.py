"""The harness's checks are good clients of a rate-limited node (PROTOCOL §10, node/http/limits.py).

A node with a tiny per-address rate answers 429 `rate_limited` with `Retry-After`
once a client's burst is spent. A plain request shows that answer as it is; the
harness's checks (`patience_s`, `NodeHandle.get`, the block pages of `TestnetChecks`)
wait the delay the node asked for and still get the full answer.
"""

from __future__ import annotations

import time

import pytest

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair, sha256
from tests.e2e.harness.config_file import edit_config
from tests.e2e.harness.http_client import RATE_LIMITED, http_get, http_request, is_error_body
from tests.e2e.harness.testnet_checks import TestnetChecks
from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.node_process import NodeProcess

pytestmark = pytest.mark.integration

RATE_PER_S = 4
"""Requests per second the test node gives back to a client."""

BURST = 8
"""Requests the test node lets a client make at once."""

BLOCKS = 3
"""Blocks made before the checks read them."""


def _spend_burst(url: str) -> float:
    """Send requests until the node refuses one; the `Retry-After` it asked for (seconds)."""
    for _ in range(10 * BURST):
        response = http_request(url + "/status")
        if response.status == RATE_LIMITED:
            assert is_error_body(response.body) and response.body["error"]["code"] == "rate_limited"
            assert response.retry_after_s is not None and response.retry_after_s >= 1, response.headers
            return response.retry_after_s
    raise AssertionError(f"{10 * BURST} requests and no 429: is the rate limit configured?")


@pytest.fixture(scope="module")
def limited_node(tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    """A node with `BLOCKS` blocks, then a per-address limit of `RATE_PER_S`/s, burst `BURST`."""
    home = tmp_path_factory.mktemp("good-client") / "node"
    with NodeProcess(home) as node:
        validator = node.validator_key
        chain_id = node.status()["chain_id"]
        recipient = KeyPair.from_seed(sha256(b"good client")).address
        for nonce in range(BLOCKS):
            tx = sign_transaction(validator, chain_id, "transfer", {"to": recipient, "amount": 1}, nonce, 10)
            node.wait_for_tx(node.submit(tx.raw))
        node.stop()
    edit_config(home, {"http": {"rate_per_ip": RATE_PER_S, "burst_per_ip": BURST}})
    with node:  # restarted with the limit; start-up polling waits out the 429s like any check
        yield node


def test_a_plain_request_sees_the_429(limited_node: NodeProcess) -> None:
    assert _spend_burst(limited_node.url) >= 1


def test_patience_waits_out_retry_after_and_gets_the_answer(limited_node: NodeProcess) -> None:
    _spend_burst(limited_node.url)
    began = time.monotonic()
    status, body = http_get(limited_node.url + "/status", patience_s=30)
    assert status == 200, body
    assert body["height"] >= BLOCKS
    assert time.monotonic() - began >= 0.5  # it did wait for a token to come back


def test_patience_is_bounded(limited_node: NodeProcess) -> None:
    """With less patience than the node asks for, the 429 comes back as it is."""
    _spend_burst(limited_node.url)
    response = http_request(limited_node.url + "/status", patience_s=0.1)
    assert response.status == RATE_LIMITED


def test_block_checks_read_every_block_despite_the_limit(limited_node: NodeProcess) -> None:
    """Paging one block at a time after the burst is spent: every page still arrives."""
    handle = NodeHandle(index=0, name="node0", home=limited_node.home, url=limited_node.url,
                        p2p_port=limited_node.p2p_port or 0, validator=True)
    height = handle.height()
    _spend_burst(limited_node.url)
    views = TestnetChecks().blocks(handle, height, page_size=1)
    assert [view["height"] for view in views] == list(range(1, height + 1))
    for view in views:
        assert len(view["hash"]) == 64 and view["commit"]["signatures"]
    hashes = [view["hash"] for view in views]
    _spend_burst(limited_node.url)
    assert TestnetChecks().block_hashes(handle, height) == hashes
