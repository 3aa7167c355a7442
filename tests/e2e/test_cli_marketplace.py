"""The marketplace CLI: payload builders, sealed addresses, and a whole order through a real testnet.

The integration test drives one order from role grants to the merchant's reply to a
review using only `python -m cli …` against a one-validator testnet process, and checks
that the buyer's address is sealed (R13): readable by the merchant and, once re-sealed,
by the carrier, but never in the node's JSON or in the raw block bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main
from client import payloads
from client.formatting import format_bps, format_value
from client.payloads import PayloadError
from client.sealing import MAX_ADDRESS_BYTES, SealError, open_sealed, seal_for
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.schema import check_payload
from tests.e2e.test_cli import ROOT, free_base_port

DEADLINE_SECONDS = 90
SHOP = bytes(range(32))
ORDER = bytes(range(1, 33))
ADDRESS = "Erin Example, 12 Harbour Road, Qingdao 266000"


# --- node/payloads.py ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("500", 500),
        ("5%", 500),
        ("2.5%", 250),
        ("0.01%", 1),
        ("100%", 10000),
        ("0", 0),
        ("750bps", 750),
        (" 12 % ", 1200),
    ],
)
def test_parse_bps_accepts_points_and_percent(text: str, bps: int) -> None:
    assert payloads.parse_bps(text, "--points-bps") == bps


@pytest.mark.parametrize("text", ["10001", "101%", "0.001%", "-1", "five", "1.5"])
def test_parse_bps_rejects_out_of_range_and_fractions(text: str) -> None:
    with pytest.raises(PayloadError) as raised:
        payloads.parse_bps(text, "--points-bps")
    assert raised.value.option == "--points-bps"


def test_parse_id_and_signed() -> None:
    assert payloads.parse_id("AB" * 32, "--shop") == bytes([0xAB]) * 32
    assert payloads.parse_id("0x" + "01" * 32, "--shop") == bytes([1]) * 32
    for bad in ("ab" * 31, "zz" * 32, ""):
        with pytest.raises(PayloadError, match="--order"):
            payloads.parse_id(bad, "--order")
    assert payloads.parse_signed("+5", "--stock-delta") == 5
    assert payloads.parse_signed("-3", "--stock-delta") == -3
    with pytest.raises(PayloadError):
        payloads.parse_signed("3.5", "--stock-delta")
    with pytest.raises(PayloadError):
        payloads.parse_item_id("bad id", "--item-id")


def test_builders_omit_unset_options_and_pass_the_schema() -> None:
    arbiter = bytes([7]) * 32
    built = {
        "shop_create": payloads.shop_create("Tea", 500, 2000),
        "shop_update": payloads.shop_update(SHOP, open=False),
        "listing_create": payloads.listing_create(
            SHOP, "Tea", 12_500_000, 10, tags=["tea", "green"]
        ),
        "listing_update": payloads.listing_update(SHOP, stock_delta=-2, active=True),
        "order_place": payloads.order_place(SHOP, 2, 12_500_000, b"sealed", arbiter),
        "order_accept": payloads.order_only(ORDER),
        "order_reject": payloads.order_with_reason(ORDER, "sold out"),
        "order_ship": payloads.order_ship(ORDER, arbiter, "SF1"),
        "shipment_update": payloads.shipment_update(ORDER, "in_transit", "Shanghai"),
        "order_refund": payloads.order_refund(ORDER, 5),
        "dispute_resolve": payloads.dispute_resolve(ORDER, 0, "merchant right"),
        "review_submit": payloads.review_submit(ORDER, 5),
        "review_reply": payloads.review_reply(ORDER, "thanks"),
        "item_register": payloads.item_register("CAKE-1", "a cake"),
        "item_event": payloads.item_event("CAKE-1", "inspected", "lab"),
        "item_transfer": payloads.item_transfer("CAKE-1", arbiter, custody_only=True),
    }
    for tx_type, payload in built.items():
        check_payload(tx_type, payload)
        assert None not in payload.values() and [] not in payload.values(), tx_type
    assert built["shop_create"] == {"name": "Tea", "points_bps": 500, "max_redeem_bps": 2000}
    assert built["shop_update"] == {"shop_id": SHOP, "open": False}
    assert (
        built["listing_create"]["tags"] == ["tea", "green"]
        and "item_ids" not in built["listing_create"]
    )
    assert built["order_place"] == {
        "listing_id": SHOP,
        "quantity": 2,
        "max_unit_price": 12_500_000,
        "shipping": b"sealed",
        "arbiter": arbiter,
    }
    assert "shipping_for_carrier" not in built["order_ship"]
    assert "note" not in built["shipment_update"] and "text" not in built["review_submit"]


def test_builders_with_every_option() -> None:
    digest = payloads.sha256_of(b"certificate")
    shop = payloads.shop_create("Tea", 0, 0, "desc", [bytes([1]) * 32, bytes([2]) * 32])
    assert shop["arbiters"] == [bytes([1]) * 32, bytes([2]) * 32] and shop["description"] == "desc"
    listing = payloads.listing_create(
        SHOP, "Cakes", 88, None, item_ids=("A", "B"), metadata_hash=digest
    )
    assert (
        listing["stock"] == 2
        and listing["item_ids"] == ["A", "B"]
        and listing["metadata_hash"] == digest
    )
    check_payload("listing_create", listing)
    event = payloads.item_event("A", "inspected", "lab", digest, "clean")
    assert event["data_hash"] == digest and event["note"] == "clean"
    assert payloads.one_hash(b"certificate", None, "--metadata-file") == digest
    assert payloads.one_hash(None, digest.hex(), "--metadata-hash") == digest
    assert payloads.one_hash(None, None, "--metadata-hash") is None
    with pytest.raises(PayloadError, match="not both"):
        payloads.one_hash(b"x", digest.hex(), "--metadata-file")


def test_builders_refuse_empty_updates_and_listings_without_stock() -> None:
    with pytest.raises(PayloadError, match="at least one"):
        payloads.shop_update(SHOP)
    with pytest.raises(PayloadError, match="at least one"):
        payloads.listing_update(SHOP, tags=[])
    with pytest.raises(PayloadError, match="--stock"):
        payloads.listing_create(SHOP, "Tea", 1)


# --- node/sealing.py and formatting -------------------------------------------------


def test_sealed_address_opens_only_for_its_recipient() -> None:
    merchant, carrier, stranger = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    sealed = seal_for(merchant.address, ADDRESS.encode())
    assert ADDRESS.encode() not in sealed and len(sealed) == len(ADDRESS.encode()) + 48
    assert open_sealed(merchant, sealed) == ADDRESS.encode()
    resealed = seal_for(carrier.address, open_sealed(merchant, sealed))
    assert open_sealed(carrier, resealed) == ADDRESS.encode()
    for key, box in (
        (stranger, sealed),
        (carrier, sealed),
        (merchant, resealed),
        (merchant, b"short"),
    ):
        with pytest.raises(SealError, match="not sealed to"):
            open_sealed(key, box)
    assert seal_for(merchant.address, ADDRESS.encode()) != sealed, "an ephemeral key per box"


def test_seal_limits() -> None:
    merchant = KeyPair.generate()
    assert len(seal_for(merchant.address, b"x" * MAX_ADDRESS_BYTES)) == 1024
    with pytest.raises(SealError, match="at most"):
        seal_for(merchant.address, b"x" * (MAX_ADDRESS_BYTES + 1))
    with pytest.raises(SealError):
        seal_for(b"short", b"x")


def test_formatting_of_amounts_counters_and_rates() -> None:
    assert format_bps(500) == "5% (500 bps)" and format_bps(250) == "2.5% (250 bps)"
    assert format_value("escrow", 12_500_000) == "12.5 MKT (12500000 µMKT)"
    assert format_value("orders_refunded", 3) == "3"
    assert format_value("refund_rate_bps", 2000) == "20% (2000 bps)"


def test_tx_commands_check_options_before_signing(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "k.json"
    key.write_text(
        json.dumps({"address": KeyPair.generate().address.hex(), "secret_seed": "11" * 32})
    )
    cases = [
        (["shop-create", "--name", "Tea", "--points-bps", "150%"], "between 0 and 10000"),
        (["listing-update", "--listing", "12"], "not 64 hex"),
        (["listing-create", "--shop", "ab" * 32, "--title", "T", "--price", "1MKT"], "--stock"),
        (["shop-update", "--shop", "ab" * 32], "at least one"),
        (["order-refund", "--order", "ab" * 32], "exactly one of --amount and --all"),
        (["item-register", "--item-id", "no spaces", "--description", "d"], "letters, digits"),
        (["shop-create", "--name", "x" * 65], "invalid_field: payload.name"),
    ]
    for arguments, fragment in cases:
        result = runner.invoke(
            main, ["tx", *arguments, "--key", str(key), "--node", "http://127.0.0.1:9"]
        )
        assert result.exit_code != 0, arguments
        assert fragment in result.output, (arguments, result.output)


# --- a whole order through a real testnet -------------------------------------------


def cli(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert completed.returncode == 0, f"{arguments}:\n{completed.stdout}\n{completed.stderr}"
    return completed


def cli_json(*arguments: str) -> Any:
    return json.loads(cli(*arguments, "--json").stdout)


def http(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture
def testnet(tmp_path: Path):  # type: ignore[no-untyped-def]
    net = tmp_path / "net"
    cli(
        "testnet",
        "start",
        "--nodes",
        "1",
        "--home",
        str(net),
        "--base-port",
        str(free_base_port(2)),
    )
    try:
        yield net, json.loads((net / "testnet.json").read_text())["nodes"][0]["http"]
    finally:
        cli("testnet", "stop", "--home", str(net))


@pytest.mark.integration
def test_an_order_from_placement_to_review_through_the_cli(testnet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, url = testnet
    key = {
        name: str(net / "accounts" / f"{name}.json")
        for name in ("faucet", "alice", "carol", "dave", "erin")
    }
    node = ("--node", url)
    kyc = tmp_path / "kyc.pdf"
    kyc.write_bytes(b"passport scan")
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(b"2019 spring harvest certificate")

    # Roles after KYC; three grants from one sender go in nonce order, the last one waits.
    cli(
        "tx",
        "role-grant",
        "--key",
        key["faucet"],
        "--account",
        key["alice"],
        "--role",
        "merchant",
        "--evidence-file",
        str(kyc),
        *node,
    )
    cli(
        "tx",
        "role-grant",
        "--key",
        key["faucet"],
        "--account",
        key["dave"],
        "--role",
        "carrier",
        "--evidence-hash",
        "ab" * 32,
        *node,
    )
    cli(
        "tx",
        "role-grant",
        "--key",
        key["faucet"],
        "--account",
        key["carol"],
        "--role",
        "arbiter",
        "--evidence-file",
        str(kyc),
        "--wait",
        *node,
    )

    shop = cli_json(
        "tx",
        "shop-create",
        "--key",
        key["alice"],
        "--name",
        "Alice's Tea House",
        "--points-bps",
        "5%",
        "--max-redeem-bps",
        "2000",
        "--arbiter",
        key["carol"],
        "--wait",
        *node,
    )
    shop_id = shop["shop_id"]
    assert shop["result"]["ok"] and shop_id == shop["hash"]
    cli(
        "tx",
        "item-register",
        "--key",
        key["alice"],
        "--item-id",
        "CAKE-2019-1",
        "--description",
        "Pu'er cake 357 g",
        "--metadata-file",
        str(certificate),
        *node,
    )
    cli(
        "tx",
        "item-event",
        "--key",
        key["alice"],
        "--item-id",
        "CAKE-2019-1",
        "--kind",
        "inspected",
        "--location",
        "Kunming lab",
        "--data-file",
        str(certificate),
        "--note",
        "clean",
        *node,
    )
    created = cli(
        "tx",
        "listing-create",
        "--key",
        key["alice"],
        "--shop",
        shop_id,
        "--title",
        "Aged Pu'er cake",
        "--price",
        "88MKT",
        "--item-id",
        "CAKE-2019-1",
        "--tag",
        "tea",
        "--tag",
        "puer",
        "--wait",
        *node,
    )
    listing_id = created.stdout.split("listing id: ")[1].split()[0]

    placed = cli(
        "tx",
        "order-place",
        "--key",
        key["erin"],
        "--listing",
        listing_id,
        "--ship-to",
        ADDRESS,
        "--wait",
        "--json",
        *node,
    )
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

    wrong = cli(
        "tx",
        "order-ship",
        "--key",
        key["dave"],
        "--order",
        order_id,
        "--carrier",
        key["dave"],
        "--tracking",
        "X",
        *node,
        check=False,
    )
    assert wrong.returncode == 1 and "not this order's merchant" in wrong.stderr
    cli("tx", "order-accept", "--key", key["alice"], "--order", order_id, *node)
    shipped = cli_json(
        "tx",
        "order-ship",
        "--key",
        key["alice"],
        "--order",
        order_id,
        "--carrier",
        key["dave"],
        "--tracking",
        "SF123456",
        "--wait",
        *node,
    )
    assert shipped["result"]["ok"] and "shipping_for_carrier" in shipped["payload"]
    carrier_view = cli("query", "order", order_id, "--decrypt", "--key", key["dave"], *node)
    assert ADDRESS in carrier_view.stdout and "carrier's key" in carrier_view.stdout
    assert ADDRESS.encode() not in http(f"{url}/blocks/{shipped['height']}/raw")

    cli(
        "tx",
        "shipment-update",
        "--key",
        key["dave"],
        "--order",
        order_id,
        "--status",
        "picked_up",
        "--location",
        "Kunming hub",
        *node,
    )
    cli(
        "tx",
        "shipment-update",
        "--key",
        key["dave"],
        "--order",
        order_id,
        "--status",
        "delivered",
        "--location",
        "front door",
        "--note",
        "signed",
        "--wait",
        *node,
    )
    cli("tx", "order-confirm", "--key", key["erin"], "--order", order_id, *node)
    cli(
        "tx",
        "review-submit",
        "--key",
        key["erin"],
        "--order",
        order_id,
        "--rating",
        "5",
        "--text",
        "Fragrant and fresh",
        "--wait",
        *node,
    )
    cli(
        "tx",
        "review-reply",
        "--key",
        key["alice"],
        "--order",
        order_id,
        "--text",
        "Thank you!",
        "--wait",
        *node,
    )

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


@pytest.mark.integration
def test_updates_refusals_and_after_sales_through_the_cli(testnet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, url = testnet
    key = {
        name: str(net / "accounts" / f"{name}.json")
        for name in ("faucet", "alice", "carol", "dave", "erin")
    }
    node = ("--node", url)
    for name, role in (("alice", "merchant"), ("dave", "carrier"), ("carol", "arbiter")):
        cli(
            "tx",
            "role-grant",
            "--key",
            key["faucet"],
            "--account",
            key[name],
            "--role",
            role,
            "--evidence-hash",
            "cd" * 32,
            *node,
        )
    cli(
        "tx",
        "transfer",
        "--key",
        key["faucet"],
        "--to",
        key["erin"],
        "--amount",
        "1MKT",
        "--wait",
        *node,
    )
    shop_id = cli_json(
        "tx",
        "shop-create",
        "--key",
        key["alice"],
        "--name",
        "Bikes",
        "--arbiter",
        key["carol"],
        "--wait",
        *node,
    )["shop_id"]
    listing_id = cli_json(
        "tx",
        "listing-create",
        "--key",
        key["alice"],
        "--shop",
        shop_id,
        "--title",
        "Lamp",
        "--price",
        "10MKT",
        "--stock",
        "10",
        "--wait",
        *node,
    )["listing_id"]
    cli(
        "tx",
        "listing-update",
        "--key",
        key["alice"],
        "--listing",
        listing_id,
        "--price",
        "9MKT",
        "--stock-delta",
        "-2",
        "--inactive",
        *node,
    )
    cli(
        "tx",
        "shop-update",
        "--key",
        key["alice"],
        "--shop",
        shop_id,
        "--name",
        "Bob's Bikes",
        "--closed",
        "--points-bps",
        "1%",
        "--wait",
        *node,
    )
    paused = cli_json("query", "listing", listing_id, *node)
    assert (paused["price"], paused["stock"], paused["active"]) == (9_000_000, 8, False)
    closed = cli_json("query", "shop", shop_id, *node)
    assert (closed["name"], closed["open"], closed["points_bps"]) == ("Bob's Bikes", False, 100)
    refused = cli(
        "tx",
        "order-place",
        "--key",
        key["erin"],
        "--listing",
        listing_id,
        "--ship-to",
        ADDRESS,
        "--wait",
        *node,
        check=False,
    )
    assert refused.returncode == 1 and "invalid_state" in refused.stdout
    cli("tx", "shop-update", "--key", key["alice"], "--shop", shop_id, "--open", *node)
    cli(
        "tx",
        "listing-update",
        "--key",
        key["alice"],
        "--listing",
        listing_id,
        "--active",
        "--wait",
        *node,
    )
    too_cheap = cli(
        "tx",
        "order-place",
        "--key",
        key["erin"],
        "--listing",
        listing_id,
        "--ship-to",
        ADDRESS,
        "--max-unit-price",
        "8MKT",
        "--wait",
        *node,
        check=False,
    )
    assert too_cheap.returncode == 1 and "price_changed" in too_cheap.stdout

    orders = {}
    for name in ("cancelled", "rejected", "refunded", "resolved"):
        orders[name] = cli_json(
            "tx",
            "order-place",
            "--key",
            key["erin"],
            "--listing",
            listing_id,
            "--ship-to",
            ADDRESS,
            "--arbiter",
            key["carol"],
            *node,
        )["order_id"]
    cli("tx", "order-accept", "--key", key["alice"], "--order", orders["refunded"], "--wait", *node)
    cli("tx", "order-cancel", "--key", key["erin"], "--order", orders["cancelled"], *node)
    cli(
        "tx",
        "order-reject",
        "--key",
        key["alice"],
        "--order",
        orders["rejected"],
        "--reason",
        "no stock",
        *node,
    )
    cli("tx", "order-refund", "--key", key["alice"], "--order", orders["refunded"], "--all", *node)
    wrong = cli(
        "tx",
        "order-ship",
        "--key",
        key["dave"],
        "--order",
        orders["resolved"],
        "--carrier",
        key["dave"],
        "--tracking",
        "T1",
        "--no-reseal",
        "--wait",
        *node,
        check=False,
    )
    assert (
        wrong.returncode == 1 and "forbidden" in wrong.stdout
    )  # without re-sealing, the chain is the judge
    cli(
        "tx",
        "order-ship",
        "--key",
        key["alice"],
        "--order",
        orders["resolved"],
        "--carrier",
        key["dave"],
        "--tracking",
        "T1",
        "--no-reseal",
        "--wait",
        *node,
    )
    unsealed = cli(
        "query", "order", orders["resolved"], "--decrypt", "--key", key["dave"], *node, check=False
    )
    assert unsealed.returncode == 1 and "without re-sealing" in unsealed.stderr
    cli(
        "tx",
        "return-request",
        "--key",
        key["erin"],
        "--order",
        orders["resolved"],
        "--reason",
        "flickers",
        "--wait",
        *node,
    )
    cli(
        "tx",
        "order-refund",
        "--key",
        key["alice"],
        "--order",
        orders["resolved"],
        "--amount",
        "2MKT",
        *node,
    )
    cli(
        "tx",
        "dispute-open",
        "--key",
        key["erin"],
        "--order",
        orders["resolved"],
        "--reason",
        "offer too low",
        "--wait",
        *node,
    )
    offered = cli_json("query", "order", orders["resolved"], *node)
    assert offered["state"] == "disputed" and offered["escrow"] == 7_000_000
    cli(
        "tx",
        "dispute-resolve",
        "--key",
        key["carol"],
        "--order",
        orders["resolved"],
        "--buyer-amount",
        "3MKT",
        "--ruling",
        "lamp works half the time",
        "--wait",
        *node,
    )
    cli(
        "tx",
        "review-submit",
        "--key",
        key["erin"],
        "--order",
        orders["resolved"],
        "--rating",
        "2",
        "--wait",
        *node,
    )
    for state, order_id in orders.items():
        assert cli_json("query", "order", order_id, *node)["state"] == state
    listed = cli_json("query", "orders", "--merchant", key["alice"], *node)["orders"]
    assert {order["id"] for order in listed} == set(orders.values())
    assert cli_json("query", "listing", listing_id, *node)["stock"] == 8, (
        "no sale: every unit came back (R14)"
    )

    cli(
        "tx",
        "item-register",
        "--key",
        key["alice"],
        "--item-id",
        "LAMP-1",
        "--description",
        "lamp",
        *node,
    )
    cli(
        "tx",
        "item-transfer",
        "--key",
        key["alice"],
        "--item-id",
        "LAMP-1",
        "--to",
        key["dave"],
        "--custody-only",
        "--wait",
        *node,
    )
    cli(
        "tx",
        "item-transfer",
        "--key",
        key["dave"],
        "--item-id",
        "LAMP-1",
        "--to",
        key["alice"],
        "--custody-only",
        "--wait",
        *node,
    )
    item = cli_json("query", "item", "LAMP-1", *node)
    assert [entry["kind"] for entry in item["history"]] == ["registered", "transfer", "transfer"]
    assert item["owner"] == item["custodian"]
