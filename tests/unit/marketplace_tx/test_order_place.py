"""Placing an order (R13): escrow, price and stock checks, arbiters, funds, and R12 precedence."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    ARBITER_2,
    BUYER,
    BUYER_2,
    BUYER_3,
    FUNDS,
    MERCHANT,
    MERCHANT_2,
    OUTSIDER,
    REGISTRAR,
    UINT64_MAX,
    Chain,
    Market,
    assert_fails,
    list_goods,
    new_market,
    open_shop,
)

PRICE = 1_000_000


# ---------------------------------------------------------------------- order_place (R13)


def test_order_place_moves_price_times_quantity_into_escrow() -> None:
    market = new_market(price=PRICE, stock=10)
    chain = market.chain
    before = chain.balance(BUYER)
    order_id = market.place(BUYER, 3)
    order = chain.order(order_id)
    assert chain.balance(BUYER) == before - 3 * PRICE - 10
    assert (order.state, order.escrow, order.total_price, order.unit_price, order.quantity) == (
        "placed",
        3 * PRICE,
        3 * PRICE,
        PRICE,
        3,
    )
    assert (order.buyer, order.merchant, order.shop_id, order.listing_id) == (
        BUYER.address,
        MERCHANT.address,
        market.shop_id,
        market.listing_id,
    )
    assert order.arbiter == ARBITER.address and order.shipping == b"sealed-address"
    assert order.placed_at == chain.time
    assert order.deadline == chain.time + chain.params.accept_window_ms
    assert (order.deadline, order_id) in chain.schedule()
    assert chain.listing(market.listing_id).stock == 7
    assert chain.last_block is not None
    assert chain.last_block.receipts[0].events == (
        {
            "type": "order_placed",
            "order_id": order_id,
            "buyer": BUYER.address,
            "merchant": MERCHANT.address,
            "escrow": 3 * PRICE,
        },
    )
    assert chain.total_money() == chain.genesis.total_supply()


def test_price_above_max_unit_price_is_price_changed() -> None:
    market = new_market(price=PRICE)
    assert_fails(
        market.chain.send(BUYER, "order_place", market.place_payload(max_unit_price=PRICE - 1)),
        "price_changed",
        "payload.max_unit_price",
    )
    market.chain.must(
        MERCHANT, "listing_update", {"listing_id": market.listing_id, "price": PRICE + 1}
    )
    assert_fails(
        market.chain.send(BUYER, "order_place", market.place_payload(max_unit_price=PRICE)),
        "price_changed",
        "payload.max_unit_price",
    )
    order = market.chain.order(market.place(max_unit_price=PRICE + 5))
    assert order.unit_price == PRICE + 1  # the listing's price, not the buyer's bound


def test_quantity_above_stock_is_out_of_stock() -> None:
    market = new_market(stock=3)
    assert_fails(
        market.chain.send(BUYER, "order_place", market.place_payload(4)),
        "out_of_stock",
        "payload.quantity",
    )
    market.place(BUYER, 3)
    assert_fails(
        market.chain.send(BUYER_2, "order_place", market.place_payload(1)),
        "out_of_stock",
        "payload.quantity",
    )


def test_inactive_listing_or_closed_shop_is_invalid_state() -> None:
    market = new_market()
    chain = market.chain
    chain.must(MERCHANT, "shop_update", {"shop_id": market.shop_id, "open": False})
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload()),
        "invalid_state",
        "payload.listing_id",
    )
    chain.must(MERCHANT, "shop_update", {"shop_id": market.shop_id, "open": True})
    chain.must(MERCHANT, "listing_update", {"listing_id": market.listing_id, "active": False})
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload()),
        "invalid_state",
        "payload.listing_id",
    )


def test_unknown_listing_is_not_found() -> None:
    market = new_market()
    assert_fails(
        market.chain.send(BUYER, "order_place", market.place_payload(listing_id=b"\x01" * 32)),
        "not_found",
        "payload.listing_id",
    )


def test_a_shop_owner_cannot_order_from_it() -> None:
    market = new_market(with_arbiter=False)
    assert_fails(
        market.chain.send(MERCHANT, "order_place", market.place_payload()), "forbidden", "sender"
    )


def test_arbiter_rules_at_order_place() -> None:
    market = new_market()  # the shop lists ARBITER
    chain = market.chain
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload(arbiter=None)),
        "invalid_field",
        "payload.arbiter",
    )
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload(arbiter=ARBITER_2.address)),
        "invalid_field",
        "payload.arbiter",
    )
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload(arbiter=OUTSIDER.address)),
        "forbidden",
        "payload.arbiter",
    )
    # the buyer cannot be the arbiter, even holding the role and even if the shop lists it
    shop_id = open_shop(chain, MERCHANT, (ARBITER, BUYER_2))
    listing_id = list_goods(chain, shop_id)
    own = Market(chain, shop_id, listing_id, MERCHANT, BUYER_2)
    assert_fails(
        chain.send(BUYER_2, "order_place", own.place_payload()), "forbidden", "payload.arbiter"
    )
    assert chain.order(own.place(BUYER)).arbiter == BUYER_2.address  # another buyer may name it


def test_the_shop_owner_cannot_be_the_arbiter() -> None:
    chain = Chain()
    # MERCHANT_2 holds `arbiter` but cannot list itself …
    receipt = chain.send(
        MERCHANT_2,
        "shop_create",
        {"name": "S", "points_bps": 0, "max_redeem_bps": 0, "arbiters": [MERCHANT_2.address]},
    )
    assert_fails(receipt, "forbidden", "payload.arbiters")
    # … nor be named by a buyer
    market = new_market(chain, MERCHANT_2)
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload(arbiter=MERCHANT_2.address)),
        "forbidden",
        "payload.arbiter",
    )


def test_a_shop_without_arbiters_takes_no_arbiter() -> None:
    market = new_market(with_arbiter=False)
    assert_fails(
        market.chain.send(BUYER, "order_place", market.place_payload(arbiter=ARBITER.address)),
        "invalid_field",
        "payload.arbiter",
    )
    assert market.chain.order(market.place()).arbiter is None


def test_arbiter_role_is_checked_when_named_and_revoking_it_spares_existing_orders() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("disputed")
    chain.must(REGISTRAR, "role_revoke", {"account": ARBITER.address, "role": "arbiter"})
    assert_fails(
        chain.send(BUYER_2, "order_place", market.place_payload()), "forbidden", "payload.arbiter"
    )
    chain.must(
        ARBITER, "dispute_resolve", {"order_id": order_id, "buyer_amount": 0, "ruling": "ok"}
    )
    assert chain.order(order_id).state == "resolved"


def test_price_times_quantity_above_uint64_is_invalid_field() -> None:
    price = 2**63
    market = new_market(price=price, stock=2, with_arbiter=False)
    receipt = market.chain.send(
        BUYER, "order_place", market.place_payload(2, max_unit_price=UINT64_MAX)
    )
    assert_fails(receipt, "invalid_field", "payload.quantity")
    # one unit fits in 64 bits; the buyer simply cannot pay it
    receipt = market.chain.send(
        BUYER, "order_place", market.place_payload(1, max_unit_price=UINT64_MAX)
    )
    assert receipt.code == "insufficient_funds"


def test_a_buyer_who_cannot_pay_gets_insufficient_funds_and_nothing_changes() -> None:
    market = new_market(price=FUNDS, stock=2, with_arbiter=False)
    chain = market.chain
    receipt = chain.send(BUYER, "order_place", market.place_payload())
    assert receipt.code == "insufficient_funds"
    assert chain.listing(market.listing_id).stock == 2
    assert chain.balance(BUYER) == FUNDS - 10


# R12: schema → existence → authority → state → windows → values → funds
PLACE_PRECEDENCE = [
    ("schema beats existence", "invalid_field", {"listing_id": b"\x09" * 32, "quantity": 0}),
    (
        "existence beats authority",
        "not_found",
        {"listing_id": b"\x09" * 32, "arbiter": OUTSIDER.address},
    ),
    ("authority beats state", "forbidden", {"arbiter": OUTSIDER.address, "_inactive": True}),
    (
        "state beats values",
        "invalid_state",
        {"_inactive": True, "max_unit_price": 1, "quantity": 99},
    ),
    ("price_changed beats out_of_stock", "price_changed", {"max_unit_price": 1, "quantity": 99}),
    ("out_of_stock beats invalid_field", "out_of_stock", {"quantity": 99, "arbiter": None}),
    ("invalid_field beats funds", "invalid_field", {"arbiter": None, "_poor": True}),
    ("redeem cap beats points held", "invalid_field", {"redeem_points": PRICE}),
]


@pytest.mark.parametrize(
    ("name", "code", "changes"), PLACE_PRECEDENCE, ids=[row[0] for row in PLACE_PRECEDENCE]
)
def test_order_place_precedence(name: str, code: str, changes: dict[str, Any]) -> None:
    market = new_market(price=PRICE, stock=10)
    chain = market.chain
    changes = dict(changes)
    if changes.pop("_inactive", False):
        chain.must(MERCHANT, "listing_update", {"listing_id": market.listing_id, "active": False})
    buyer = BUYER
    if changes.pop("_poor", False):
        buyer = BUYER_3
        chain.must(BUYER_3, "transfer", {"to": BUYER.address, "amount": FUNDS - 100})
    receipt = chain.execute(buyer, "order_place", market.place_payload(**changes))
    assert receipt.code == code, receipt.message
