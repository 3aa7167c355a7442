"""A whole order through the CLI and a real one-validator testnet process: role grants,
a shop, an item and its listing, placement with a sealed address, acceptance, shipping,
delivery, confirmation, the review and the merchant's reply, using only `python -m cli …`.

The buyer's address is sealed (R13): readable by the merchant and, once re-sealed, by
the carrier, but never in the node's JSON or in the raw block bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.sealing import seal_for
from tests.e2e.cli_testnet import ADDRESS, account_keys, cli, cli_json, cli_testnet_fixture, http
from tests.e2e.lying_node import lying_node

testnet = cli_testnet_fixture()


def key_address(key_file: str) -> str:
    """The address in a testnet account's key file."""
    return json.loads(Path(key_file).read_text())["address"]


@pytest.mark.integration
def test_an_order_from_placement_to_review_through_the_cli(testnet: tuple[Path, str], tmp_path: Path) -> None:
    net, url = testnet
    key = account_keys(net)
    node = ("--node", url)
    kyc = tmp_path / "kyc.pdf"
    kyc.write_bytes(b"passport scan")
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(b"2019 spring harvest certificate")

    # Roles after KYC; three grants from one sender go in nonce order, the last one waits.
    cli("tx", "role-grant", "--key", key["faucet"], "--account", key["alice"], "--role", "merchant",
        "--evidence-file", str(kyc), *node)
    cli("tx", "role-grant", "--key", key["faucet"], "--account", key["dave"], "--role", "carrier",
        "--evidence-hash", "ab" * 32, *node)
    cli("tx", "role-grant", "--key", key["faucet"], "--account", key["carol"], "--role", "arbiter",
        "--evidence-file", str(kyc), "--wait", *node)

    shop = cli_json("tx", "shop-create", "--key", key["alice"], "--name", "Alice's Tea House",
                    "--points-bps", "5%", "--max-redeem-bps", "2000", "--arbiter", key["carol"],
                    "--wait", *node)
    shop_id = shop["shop_id"]
    assert shop["result"]["ok"] and shop_id == shop["hash"]
    cli("tx", "item-register", "--key", key["alice"], "--item-id", "CAKE-2019-1", "--description",
        "Pu'er cake 357 g", "--metadata-file", str(certificate), *node)
    cli("tx", "item-event", "--key", key["alice"], "--item-id", "CAKE-2019-1", "--kind",
        "inspected", "--location", "Kunming lab", "--data-file", str(certificate), "--note",
        "clean", *node)
    created = cli("tx", "listing-create", "--key", key["alice"], "--shop", shop_id, "--title",
                  "Aged Pu'er cake", "--price", "88MKT", "--item-id", "CAKE-2019-1", "--tag", "tea",
                  "--tag", "puer", "--wait", *node)
    listing_id = created.stdout.split("listing id: ")[1].split()[0]

    placed = cli("tx", "order-place", "--key", key["erin"], "--listing", listing_id, "--ship-to",
                 ADDRESS, "--wait", "--json", *node)
    assert "the shop's first" in placed.stderr  # the arbiter was chosen for the buyer, and said so
    order = json.loads(placed.stdout)
    order_id = order["order_id"]
    assert order["result"]["ok"] and order["payload"]["max_unit_price"] == 88_000_000

    # R13: the merchant reads the address locally; the node never holds it in clear.
    shown = cli("query", "order", order_id, "--decrypt", "--key", key["alice"], *node)
    assert ADDRESS in shown.stdout and "merchant's key" in shown.stdout
    assert ADDRESS not in http(f"{url}/orders/{order_id}").decode()
    assert ADDRESS.encode() not in http(f"{url}/blocks/{order['height']}/raw")
    refused = cli("query", "order", order_id, "--decrypt", "--key", key["erin"], *node, check=False)
    assert (
        refused.returncode == 1
        and "cannot open" in refused.stderr
        and "Traceback" not in refused.stderr
    )

    wrong = cli("tx", "order-ship", "--key", key["dave"], "--order", order_id, "--carrier",
                key["dave"], "--tracking", "X", *node, check=False)
    assert wrong.returncode == 1 and "not this order's merchant" in wrong.stderr
    cli("tx", "order-accept", "--key", key["alice"], "--order", order_id, *node)

    # Issue 13: a node that swaps the sealed box (for one sealed to the merchant, with its own
    # address), or the buyer and the box, is caught by the buyer-signed, final order_place.
    merchant = json.loads(Path(key["alice"]).read_text())["address"]
    mallory = seal_for(bytes.fromhex(merchant), b"Mallory, 1 Fake Street")
    for lie, expected in (
        (lambda order: {**order, "shipping": mallory.hex()}, "is not the one in the order_place transaction"),
        (lambda order: {**order, "shipping": mallory.hex(), "buyer": key_address(key["dave"])},
         "was signed by"),
    ):
        with lying_node(url, lie) as liar:
            refused = cli("tx", "order-ship", "--key", key["alice"], "--order", order_id, "--carrier",
                          key["dave"], "--tracking", "SF123456", "--node", liar, check=False)
        assert refused.returncode == 1 and "refusing to re-seal" in refused.stderr, refused.stderr
        assert expected in refused.stderr and "Traceback" not in refused.stderr
    assert cli_json("query", "order", order_id, *node)["state"] == "accepted"  # nothing was signed

    shipped = cli_json("tx", "order-ship", "--key", key["alice"], "--order", order_id, "--carrier",
                       key["dave"], "--tracking", "SF123456", "--wait", *node)
    assert shipped["result"]["ok"] and "shipping_for_carrier" in shipped["payload"]
    carrier_view = cli("query", "order", order_id, "--decrypt", "--key", key["dave"], *node)
    assert ADDRESS in carrier_view.stdout and "carrier's key" in carrier_view.stdout
    assert ADDRESS.encode() not in http(f"{url}/blocks/{shipped['height']}/raw")

    cli("tx", "shipment-update", "--key", key["dave"], "--order", order_id, "--status", "picked_up",
        "--location", "Kunming hub", *node)
    cli("tx", "shipment-update", "--key", key["dave"], "--order", order_id, "--status", "delivered",
        "--location", "front door", "--note", "signed", "--wait", *node)
    cli("tx", "order-confirm", "--key", key["erin"], "--order", order_id, *node)
    cli("tx", "review-submit", "--key", key["erin"], "--order", order_id, "--rating", "5", "--text",
        "Fragrant and fresh", "--wait", *node)
    cli("tx", "review-reply", "--key", key["alice"], "--order", order_id, "--text", "Thank you!",
        "--wait", *node)

    final = cli_json("query", "order", order_id, *node)
    assert final["state"] == "completed" and final["escrow"] == 0
    assert [entry["event"] for entry in final["history"]] == [
        "order_place",
        "order_accept",
        "order_ship",
        "shipment_update",
        "shipment_update",
        "order_confirm",
    ]
    assert final["review"]["rating"] == 5 and final["review"]["reply"]["text"] == "Thank you!"
    readable = cli("query", "order", order_id, *node).stdout
    assert "completed" in readable and "Thank you!" in readable and "88 MKT" in readable

    shop_view = cli_json("query", "shop", shop_id, *node)
    assert (
        shop_view["reputation"]["rating_count"] == 1
        and shop_view["reputation"]["orders_completed"] == 1
    )
    assert "5.00 / 5 from 1 review(s)" in cli("query", "shop", shop_id, *node).stdout
    reviews = cli("query", "reviews", shop_id, *node).stdout
    assert "Fragrant and fresh" in reviews and "Thank you!" in reviews
    found = cli_json("query", "listings", "--q", "puer", *node)
    assert listing_id in [listing["id"] for listing in found["listings"]]
    assert (
        listing_id
        in cli("query", "listings", "--tag", "tea", "--max-price", "100MKT", *node).stdout
    )
    assert (
        cli_json("query", "listings", "--q", "puer", "--min-price", "89MKT", *node)["listings"]
        == []
    )
    completed = cli_json("query", "orders", "--buyer", key["erin"], "--state", "completed", *node)
    assert [item["id"] for item in completed["orders"]] == [order_id]

    item = cli_json("query", "item", "CAKE-2019-1", *node)
    assert [entry["kind"] for entry in item["history"]] == [
        "registered",
        "inspected",
        "listed",
        "sold",
    ]
    assert (
        item["owner"] == item["custodian"] == json.loads(Path(key["erin"]).read_text())["address"]
    )
    assert "sold" in cli("query", "item", "CAKE-2019-1", *node).stdout
    erin = cli_json("query", "account", key["erin"], *node)
    assert erin["points"] == {shop_id: 88_000_000 * 500 // 10000}
    erin_address = json.loads(Path(key["erin"]).read_text())["address"]
    history = cli_json("query", "account-txs", key["erin"], *node)["txs"]
    assert {tx["type"] for tx in history if tx["sender"] == erin_address} == {
        "order_place",
        "order_confirm",
        "review_submit",
    }
    assert "order_ship" in {
        tx["type"] for tx in history
    }  # the merchant's txs on erin's order count too
    assert "involved" in cli("query", "account-txs", key["erin"], *node).stdout
    merchant = cli("query", "account", key["alice"], *node).stdout
    assert "merchant rating" in merchant and "5.00 / 5 from 1 review(s)" in merchant
