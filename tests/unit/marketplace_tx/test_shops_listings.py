"""Shops and listings: `shop_create`, `shop_update`, `listing_create`, `listing_update` (§4)."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.crypto import KeyPair
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    ARBITER_2,
    BUYER,
    BUYER_2,
    CARRIER,
    MERCHANT,
    MERCHANT_2,
    OUTSIDER,
    PRODUCER,
    REGISTRAR,
    UINT64_MAX,
    Chain,
    assert_fails,
    list_goods,
    new_market,
    open_shop,
)

SHOP = {"name": "Tea House", "points_bps": 100, "max_redeem_bps": 5000}

# ---------------------------------------------------------------------- shop_create


def test_a_merchant_opens_a_shop() -> None:
    chain = Chain()
    shop_id = chain.must(
        MERCHANT,
        "shop_create",
        {**SHOP, "description": "leaves", "arbiters": [ARBITER.address, ARBITER_2.address]},
    )
    shop = chain.shop(shop_id)
    assert (
        shop.owner,
        shop.name,
        shop.points_bps,
        shop.max_redeem_bps,
        shop.open,
        shop.description,
    ) == (
        MERCHANT.address,
        "Tea House",
        100,
        5000,
        True,
        "leaves",
    )
    assert (shop.created_at, shop.height, shop.arbiters) == (
        chain.time,
        chain.height,
        (ARBITER.address, ARBITER_2.address),
    )
    assert chain.last_block is not None
    assert chain.last_block.receipts[0].events == (
        {
            "type": "shop_created",
            "shop_id": shop_id,
            "owner": MERCHANT.address,
            "name": "Tea House",
        },
    )


@pytest.mark.parametrize(
    "who",
    [BUYER, CARRIER, ARBITER, PRODUCER, REGISTRAR],
    ids=["buyer", "carrier", "arbiter", "producer", "registrar"],
)
def test_only_merchants_open_shops(who: KeyPair) -> None:
    assert_fails(Chain().send(who, "shop_create", SHOP), "forbidden", "sender")


def test_open_merchants_lets_anyone_open_a_shop() -> None:
    chain = Chain(Params(open_merchants=True))
    shop_id = chain.must(OUTSIDER, "shop_create", SHOP)
    assert chain.shop(shop_id).owner == OUTSIDER.address


def test_a_merchant_role_granted_later_opens_shops() -> None:
    chain = Chain()
    assert_fails(chain.send(BUYER, "shop_create", SHOP), "forbidden", "sender")
    chain.must(
        REGISTRAR,
        "role_grant",
        {"account": BUYER.address, "role": "merchant", "evidence_hash": b"\x01" * 32},
    )
    assert chain.send(BUYER, "shop_create", SHOP).ok
    chain.must(REGISTRAR, "role_revoke", {"account": BUYER.address, "role": "merchant"})
    assert_fails(chain.send(BUYER, "shop_create", SHOP), "forbidden", "sender")


def test_shop_arbiters_must_hold_the_role_and_not_be_the_owner() -> None:
    chain = Chain()
    assert_fails(
        chain.send(
            MERCHANT, "shop_create", {**SHOP, "arbiters": [ARBITER.address, CARRIER.address]}
        ),
        "forbidden",
        "payload.arbiters",
    )
    assert_fails(
        chain.send(MERCHANT_2, "shop_create", {**SHOP, "arbiters": [MERCHANT_2.address]}),
        "forbidden",
        "payload.arbiters",
    )
    assert_fails(
        chain.send(
            MERCHANT, "shop_create", {**SHOP, "arbiters": [ARBITER.address, ARBITER.address]}
        ),
        "invalid_field",
        "payload.arbiters",
    )
    # a duplicate (schema) beats a sender who is no merchant (authority)
    assert_fails(
        chain.send(BUYER, "shop_create", {**SHOP, "arbiters": [ARBITER.address, ARBITER.address]}),
        "invalid_field",
        "payload.arbiters",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "payload.name"),
        ({"name": "é" * 33}, "payload.name"),  # 66 UTF-8 bytes
        ({"points_bps": 10001}, "payload.points_bps"),
        ({"max_redeem_bps": -1}, "payload.max_redeem_bps"),
        ({"arbiters": []}, "payload.arbiters"),
        ({"arbiters": [bytes([n]) * 32 for n in range(9)]}, "payload.arbiters"),
        ({"arbiters": [b"\x01" * 31]}, "payload.arbiters[0]"),
        ({"description": "x" * 1001}, "payload.description"),
        ({"open": True}, "payload.open"),
        ({"name": None}, "payload.name"),
    ],
)
def test_shop_create_schema_is_invalid_field_at_admission(
    changes: dict[str, Any], field: str
) -> None:
    chain = Chain()
    payload = {name: value for name, value in {**SHOP, **changes}.items() if value is not None}
    assert chain.admit(MERCHANT, "shop_create", payload) == "invalid_field"
    assert_fails(
        chain.execute(BUYER, "shop_create", payload), "invalid_field", field
    )  # schema first


def test_a_64_byte_name_is_fine() -> None:
    chain = Chain()
    assert chain.send(MERCHANT, "shop_create", {**SHOP, "name": "é" * 32}).ok


# ---------------------------------------------------------------------- shop_update


def test_only_the_owner_updates_a_shop() -> None:
    chain = Chain()
    shop_id = open_shop(chain, arbiters=())
    assert_fails(
        chain.send(MERCHANT_2, "shop_update", {"shop_id": shop_id, "open": False}),
        "forbidden",
        "sender",
    )
    assert_fails(
        chain.send(MERCHANT, "shop_update", {"shop_id": b"\x02" * 32, "open": False}),
        "not_found",
        "payload.shop_id",
    )
    assert_fails(
        chain.send(BUYER, "shop_update", {"shop_id": b"\x02" * 32, "open": False}),
        "not_found",
        "payload.shop_id",
    )  # existence beats authority
    chain.must(
        MERCHANT,
        "shop_update",
        {
            "shop_id": shop_id,
            "name": "New",
            "points_bps": 7,
            "open": False,
            "arbiters": [ARBITER_2.address],
        },
    )
    shop = chain.shop(shop_id)
    assert (shop.name, shop.points_bps, shop.open, shop.arbiters, shop.max_redeem_bps) == (
        "New",
        7,
        False,
        (ARBITER_2.address,),
        5000,
    )


def test_shop_update_checks_arbiters() -> None:
    chain = Chain()
    shop_id = open_shop(chain)
    update = {"shop_id": shop_id, "arbiters": [BUYER.address]}
    assert_fails(chain.send(MERCHANT, "shop_update", update), "forbidden", "payload.arbiters")
    assert_fails(
        chain.send(MERCHANT, "shop_update", {**update, "arbiters": [MERCHANT.address]}),
        "forbidden",
        "payload.arbiters",
    )
    assert (
        chain.admit(MERCHANT, "shop_update", {"shop_id": shop_id}) == "invalid_field"
    )  # nothing to change
    assert chain.shop(shop_id).arbiters == (ARBITER.address,)


# ---------------------------------------------------------------------- listing_create


def test_the_owner_lists_goods() -> None:
    chain = Chain()
    shop_id = open_shop(chain)
    listing_id = chain.must(
        MERCHANT,
        "listing_create",
        {
            "shop_id": shop_id,
            "title": "Oolong",
            "price": 25,
            "stock": 0,
            "tags": ["tea", "oolong"],
            "metadata_hash": b"\x33" * 32,
            "description": "d",
        },
    )
    listing = chain.listing(listing_id)
    assert (
        listing.shop_id,
        listing.title,
        listing.price,
        listing.stock,
        listing.active,
        listing.item_listing,
    ) == (
        shop_id,
        "Oolong",
        25,
        0,
        True,
        False,
    )
    assert (listing.tags, listing.metadata_hash, listing.sold, listing.created_at) == (
        ("tea", "oolong"),
        b"\x33" * 32,
        0,
        chain.time,
    )


def test_listing_create_rules_and_precedence() -> None:
    chain = Chain()
    shop_id = open_shop(chain)
    listing = {"shop_id": shop_id, "title": "t", "price": 5, "stock": 1}
    assert_fails(
        chain.send(MERCHANT, "listing_create", {**listing, "shop_id": b"\x08" * 32}),
        "not_found",
        "payload.shop_id",
    )
    assert_fails(chain.send(MERCHANT_2, "listing_create", listing), "forbidden", "sender")
    chain.must(MERCHANT, "shop_update", {"shop_id": shop_id, "open": False})
    assert_fails(
        chain.send(MERCHANT, "listing_create", listing), "invalid_state", "payload.shop_id"
    )
    assert_fails(
        chain.send(MERCHANT_2, "listing_create", listing), "forbidden", "sender"
    )  # authority first
    # state beats the stock/item count (a value)
    chain.send(MERCHANT, "item_register", {"item_id": "x", "description": "d"})
    assert_fails(
        chain.send(MERCHANT, "listing_create", {**listing, "item_ids": ["x"], "stock": 2}),
        "invalid_state",
        "payload.shop_id",
    )
    for changes in (
        {"price": 0},
        {"title": ""},
        {"stock": -1},
        {"tags": ["x" * 33]},
        {"item_ids": []},
    ):
        assert chain.admit(MERCHANT, "listing_create", {**listing, **changes}) == "invalid_field", (
            changes
        )


# ---------------------------------------------------------------------- listing_update


def test_listing_update_changes_price_text_and_stock() -> None:
    market = new_market(stock=5)
    chain = market.chain
    chain.must(
        MERCHANT,
        "listing_update",
        {
            "listing_id": market.listing_id,
            "price": 7,
            "title": "Green",
            "tags": ["a"],
            "stock_delta": -5,
        },
    )
    listing = chain.listing(market.listing_id)
    assert (listing.price, listing.title, listing.tags, listing.stock) == (7, "Green", ("a",), 0)
    chain.must(MERCHANT, "listing_update", {"listing_id": market.listing_id, "stock_delta": 12})
    assert chain.listing(market.listing_id).stock == 12


def test_a_stock_below_zero_is_invalid_field() -> None:
    market = new_market(stock=5)
    chain = market.chain
    market.place(BUYER, 3)
    update = {"listing_id": market.listing_id, "stock_delta": -3}
    assert_fails(
        chain.send(MERCHANT, "listing_update", update), "invalid_field", "payload.stock_delta"
    )
    assert_fails(
        chain.send(BUYER, "listing_update", update), "forbidden", "sender"
    )  # authority first
    assert chain.listing(market.listing_id).stock == 2
    assert chain.send(MERCHANT, "listing_update", {**update, "stock_delta": -2}).ok
    assert chain.listing(market.listing_id).stock == 0


def test_a_stock_above_uint64_is_invalid_field() -> None:
    market = new_market(stock=1)
    update = {"listing_id": market.listing_id, "stock_delta": 2**63 - 1}
    assert market.chain.send(MERCHANT, "listing_update", update).ok
    assert market.chain.send(MERCHANT, "listing_update", update).ok
    assert market.chain.listing(market.listing_id).stock == UINT64_MAX
    assert_fails(
        market.chain.send(MERCHANT, "listing_update", {**update, "stock_delta": 1}),
        "invalid_field",
        "payload.stock_delta",
    )
    assert market.chain.listing(market.listing_id).stock == UINT64_MAX


@pytest.mark.parametrize("delta", [1, 0, -1])
def test_stock_delta_on_an_item_listing_is_invalid_field(delta: int) -> None:
    market = new_market(item_ids=("x", "y"))
    receipt = market.chain.send(
        MERCHANT, "listing_update", {"listing_id": market.listing_id, "stock_delta": delta}
    )
    assert_fails(receipt, "invalid_field", "payload.stock_delta")
    assert market.chain.listing(market.listing_id).stock == 2


def test_listing_update_existence_and_authority() -> None:
    market = new_market()
    chain = market.chain
    assert_fails(
        chain.send(BUYER, "listing_update", {"listing_id": b"\x0a" * 32, "price": 1}),
        "not_found",
        "payload.listing_id",
    )
    assert_fails(
        chain.send(MERCHANT_2, "listing_update", {"listing_id": market.listing_id, "price": 1}),
        "forbidden",
        "sender",
    )
    assert (
        chain.admit(MERCHANT, "listing_update", {"listing_id": market.listing_id})
        == "invalid_field"
    )


def test_deactivation_stops_new_orders_but_not_open_ones() -> None:
    market = new_market(stock=5)
    chain = market.chain
    order_id = market.order_in("accepted", quantity=2)
    chain.must(MERCHANT, "listing_update", {"listing_id": market.listing_id, "active": False})
    assert_fails(
        chain.send(BUYER_2, "order_place", market.place_payload()),
        "invalid_state",
        "payload.listing_id",
    )
    market.drive(order_id, ("ship", "deliver", "confirm"))
    assert chain.listing(market.listing_id).sold == 2
    chain.must(MERCHANT, "listing_update", {"listing_id": market.listing_id, "active": True})
    assert chain.order(market.place(BUYER_2, 3)).quantity == 3


def test_stock_follows_orders() -> None:
    market = new_market(stock=5)
    chain = market.chain
    completed = market.order_in("completed", quantity=2)
    cancelled = market.order_in("cancelled", quantity=1)
    open_order = market.place(BUYER_2, 1)
    listing = chain.listing(market.listing_id)
    assert (listing.stock, listing.sold) == (2, 2)
    assert {chain.order(order_id).state for order_id in (completed, cancelled, open_order)} == {
        "completed",
        "cancelled",
        "placed",
    }


def test_two_shops_of_one_merchant_are_independent() -> None:
    chain = Chain()
    first, second = open_shop(chain), open_shop(chain, arbiters=())
    assert first != second
    listing_id = list_goods(chain, second)
    assert chain.listing(listing_id).shop_id == second
