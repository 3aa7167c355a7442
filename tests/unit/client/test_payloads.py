"""Payload builders and option parsers of `client.payloads` (PROTOCOL §4): absent
options are absent keys (R1), every built payload passes the schema (R10)."""

from __future__ import annotations

import pytest

from client import payloads
from client.payloads import PayloadError
from marketplace_tx.rules.schema import check_payload

SHOP = bytes(range(32))
ORDER = bytes(range(1, 33))


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


def test_digital_listings_and_deliveries() -> None:
    """R41: `digital` is absent unless set, never with unique items; `order_deliver` carries the box."""
    digital = payloads.listing_create(SHOP, "Gift card 50", 50_000_000, 100, digital=True)
    assert digital["digital"] is True and "item_ids" not in digital
    assert "digital" not in payloads.listing_create(SHOP, "Tea", 1, 1)
    check_payload("listing_create", digital)
    with pytest.raises(PayloadError, match="--digital"):
        payloads.listing_create(SHOP, "Cakes", 88, None, item_ids=("A",), digital=True)
    sealed = bytes(60)
    delivered = payloads.order_deliver(ORDER, sealed)
    assert delivered == {"order_id": ORDER, "content": sealed}
    check_payload("order_deliver", delivered)
