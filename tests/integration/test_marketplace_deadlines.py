"""Deadlines over HTTP on a real node (R15, R29): a due deadline ends an order and makes a
block with no transaction waiting."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.node_process import NodeProcess, wait_until
from tests.integration.marketplace_play import BUYER, EVIDENCE, FUNDED, MERCHANT
from tests.integration.signing_client import FEE, SigningClient, sealed_address

pytestmark = pytest.mark.integration


# --- deadlines (R15, R29) ----------------------------------------------------------------------


def test_a_due_deadline_makes_a_block_with_no_transaction(tmp_path) -> None:
    fund = {MERCHANT.address: FUNDED, BUYER.address: FUNDED}
    with NodeProcess(tmp_path / "node", fund=fund, params={"accept_window_ms": 1500}) as node:
        client = SigningClient(node)
        client.ok(
            client.tx(
                node.validator_key,
                "role_grant",
                account=MERCHANT.address,
                role="merchant",
                evidence_hash=EVIDENCE,
            )
        )
        shop = client.tx(MERCHANT, "shop_create", name="Slow Shop", points_bps=0, max_redeem_bps=0)
        listing = client.tx(
            MERCHANT, "listing_create", shop_id=shop.hash, title="Kettle", price=5_000, stock=3
        )
        client.ok(shop, listing)
        order = client.tx(
            BUYER,
            "order_place",
            listing_id=listing.hash,
            quantity=2,
            max_unit_price=5_000,
            shipping=sealed_address(MERCHANT),
        )
        [placed] = client.ok(order)
        [event] = placed["result"]["events"]
        assert (event["type"], event["escrow"]) == ("order_placed", 10_000)

        def expired() -> dict[str, Any] | None:
            view = node.get_ok(f"/orders/{order.hash.hex()}")
            return view if view["state"] == "expired" else None

        view = wait_until(
            expired, node.timeout, lambda: node.describe("the order expires by deadline")
        )
        last = view["history"][-1]
        assert (last["event"], last["tx"], last["state"]) == ("deadline", "deadline", "expired")
        assert last["height"] > placed["height"]
        assert view["escrow"] == 0 and view["refunded"] == 10_000
        assert node.account(BUYER.address)["balance"] == FUNDED - FEE, (
            "the escrow went back to the buyer"
        )
        block = node.get_ok(f"/blocks/{last['height']}")
        assert block["tx_count"] == 0, "the deadline alone made the block (R29)"
        assert node.get_ok(f"/listings/{listing.hash.hex()}")["stock"] == 3
        assert [o["id"] for o in node.get_ok("/orders?state=expired")["orders"]] == [
            order.hash.hex()
        ]
        assert node.get_ok("/orders?state=placed")["orders"] == []
        assert node.get_ok(f"/shops/{shop.hash.hex()}")["reputation"]["orders_expired"] == 1
