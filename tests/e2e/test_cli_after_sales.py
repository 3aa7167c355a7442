"""Updates, refusals and after-sales through the CLI and a real one-validator testnet
process: shop and listing updates, closed shops, refusals with their codes, rejections,
cancellations, returns, refunds, disputes and their resolution, and item transfers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cli_testnet import ADDRESS, account_keys, cli, cli_json, cli_testnet_fixture

testnet = cli_testnet_fixture()


@pytest.mark.integration
def test_updates_refusals_and_after_sales_through_the_cli(testnet: tuple[Path, str], tmp_path: Path) -> None:
    net, url = testnet
    key = account_keys(net)
    node = ("--node", url)
    for name, role in (("alice", "merchant"), ("dave", "carrier"), ("carol", "arbiter")):
        cli("tx", "role-grant", "--key", key["faucet"], "--account", key[name], "--role", role,
            "--evidence-hash", "cd" * 32, *node)
    cli("tx", "transfer", "--key", key["faucet"], "--to", key["erin"], "--amount", "1MKT", "--wait",
        *node)
    shop_id = cli_json("tx", "shop-create", "--key", key["alice"], "--name", "Bikes", "--arbiter",
                       key["carol"], "--wait", *node)["shop_id"]
    listing_id = cli_json("tx", "listing-create", "--key", key["alice"], "--shop", shop_id,
                          "--title", "Lamp", "--price", "10MKT", "--stock", "10", "--wait",
                          *node)["listing_id"]
    cli("tx", "listing-update", "--key", key["alice"], "--listing", listing_id, "--price", "9MKT",
        "--stock-delta", "-2", "--inactive", *node)
    cli("tx", "shop-update", "--key", key["alice"], "--shop", shop_id, "--name", "Bob's Bikes",
        "--closed", "--points-bps", "1%", "--wait", *node)
    paused = cli_json("query", "listing", listing_id, *node)
    assert (paused["price"], paused["stock"], paused["active"]) == (9_000_000, 8, False)
    closed = cli_json("query", "shop", shop_id, *node)
    assert (closed["name"], closed["open"], closed["points_bps"]) == ("Bob's Bikes", False, 100)
    refused = cli("tx", "order-place", "--key", key["erin"], "--listing", listing_id, "--ship-to",
                  ADDRESS, "--wait", *node, check=False)
    assert refused.returncode == 1 and "invalid_state: the listing is inactive (R13)" in refused.stderr
    assert "Nothing was signed or sent" in refused.stderr  # checked before signing: no fee paid
    cli("tx", "shop-update", "--key", key["alice"], "--shop", shop_id, "--open", *node)
    cli("tx", "listing-update", "--key", key["alice"], "--listing", listing_id, "--active",
        "--wait", *node)
    too_cheap = cli("tx", "order-place", "--key", key["erin"], "--listing", listing_id, "--ship-to",
                    ADDRESS, "--max-unit-price", "8MKT", "--wait", *node, check=False)
    assert too_cheap.returncode == 1 and "price_changed: payload.max_unit_price: the price is now 9 MKT" in too_cheap.stderr

    orders = {}
    for name in ("cancelled", "rejected", "refunded", "resolved"):
        orders[name] = cli_json("tx", "order-place", "--key", key["erin"], "--listing", listing_id,
                                "--ship-to", ADDRESS, "--arbiter", key["carol"], *node)["order_id"]
    cli("tx", "order-accept", "--key", key["alice"], "--order", orders["refunded"], "--wait", *node)
    cli("tx", "order-cancel", "--key", key["erin"], "--order", orders["cancelled"], *node)
    cli("tx", "order-reject", "--key", key["alice"], "--order", orders["rejected"], "--reason",
        "no stock", *node)
    cli("tx", "order-refund", "--key", key["alice"], "--order", orders["refunded"], "--all", *node)
    wrong = cli("tx", "order-ship", "--key", key["dave"], "--order", orders["resolved"],
                "--carrier", key["dave"], "--tracking", "T1", "--no-reseal", "--wait", "--force",
                *node, check=False)
    assert (
        wrong.returncode == 1 and "forbidden" in wrong.stdout
    )  # with --force, the chain is the judge
    cli("tx", "order-ship", "--key", key["alice"], "--order", orders["resolved"], "--carrier",
        key["dave"], "--tracking", "T1", "--no-reseal", "--wait", *node)
    unsealed = cli(
        "query", "order", orders["resolved"], "--decrypt", "--key", key["dave"], *node, check=False
    )
    assert unsealed.returncode == 1 and "without re-sealing" in unsealed.stderr
    cli("tx", "return-request", "--key", key["erin"], "--order", orders["resolved"], "--reason",
        "flickers", "--wait", *node)
    cli("tx", "order-refund", "--key", key["alice"], "--order", orders["resolved"], "--amount",
        "2MKT", *node)
    cli("tx", "dispute-open", "--key", key["erin"], "--order", orders["resolved"], "--reason",
        "offer too low", "--wait", *node)
    offered = cli_json("query", "order", orders["resolved"], *node)
    assert offered["state"] == "disputed" and offered["escrow"] == 7_000_000
    cli("tx", "dispute-resolve", "--key", key["carol"], "--order", orders["resolved"],
        "--buyer-amount", "3MKT", "--ruling", "lamp works half the time", "--wait", *node)
    cli("tx", "review-submit", "--key", key["erin"], "--order", orders["resolved"], "--rating", "2",
        "--wait", *node)
    for state, order_id in orders.items():
        assert cli_json("query", "order", order_id, *node)["state"] == state
    listed = cli_json("query", "orders", "--merchant", key["alice"], *node)["orders"]
    assert {order["id"] for order in listed} == set(orders.values())
    assert cli_json("query", "listing", listing_id, *node)["stock"] == 8, (
        "no sale: every unit came back (R14)"
    )

    cli("tx", "item-register", "--key", key["alice"], "--item-id", "LAMP-1", "--description",
        "lamp", *node)
    cli("tx", "item-transfer", "--key", key["alice"], "--item-id", "LAMP-1", "--to", key["dave"],
        "--custody-only", "--wait", *node)
    cli("tx", "item-transfer", "--key", key["dave"], "--item-id", "LAMP-1", "--to", key["alice"],
        "--custody-only", "--wait", *node)
    item = cli_json("query", "item", "LAMP-1", *node)
    assert [entry["kind"] for entry in item["history"]] == ["registered", "transfer", "transfer"]
    assert item["owner"] == item["custodian"]
