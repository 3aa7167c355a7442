"""An order's life after placing: accept, reject, cancel, ship, shipment updates, confirm, history (R18)."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace_tx.primitives.crypto import KeyPair
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    BUYER,
    BUYER_2,
    CARRIER,
    CARRIER_2,
    MERCHANT,
    MERCHANT_2,
    OUTSIDER,
    REGISTRAR,
    Chain,
    assert_fails,
    new_market,
)

PRICE = 1_000_000


# ---------------------------------------------------------------------- accept, reject, cancel


def test_accept_by_the_merchant_moves_the_deadline() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.place()
    placed_deadline = chain.order(order_id).deadline
    assert_fails(chain.send(BUYER, "order_accept", {"order_id": order_id}), "forbidden", "sender")
    assert_fails(
        chain.send(OUTSIDER, "order_accept", {"order_id": order_id}), "forbidden", "sender"
    )
    assert_fails(
        chain.send(MERCHANT, "order_accept", {"order_id": b"\x07" * 32}),
        "not_found",
        "payload.order_id",
    )
    chain.must(MERCHANT, "order_accept", {"order_id": order_id})
    order = chain.order(order_id)
    assert order.state == "accepted" and order.accepted_at == chain.time
    assert order.deadline == chain.time + chain.params.ship_window_ms
    assert [entry for entry in chain.schedule() if entry[1] == order_id] == [
        (order.deadline, order_id)
    ]
    assert placed_deadline != order.deadline


@pytest.mark.parametrize("start", ["placed", "accepted"])
def test_reject_returns_escrow_and_stock(start: str) -> None:
    market = new_market(stock=5)
    chain = market.chain
    before = chain.balance(BUYER)
    order_id = market.order_in(start, quantity=2)
    assert chain.listing(market.listing_id).stock == 3
    assert_fails(
        chain.send(BUYER, "order_reject", {"order_id": order_id, "reason": "x"}),
        "forbidden",
        "sender",
    )
    chain.must(MERCHANT, "order_reject", {"order_id": order_id, "reason": "out of tea"})
    order = chain.order(order_id)
    assert (order.state, order.escrow, order.refunded, order.merchant_paid) == (
        "rejected",
        0,
        2 * PRICE,
        0,
    )
    assert order.history[-1]["reason"] == "out of tea"
    assert (
        chain.balance(BUYER) == before - 2 * 10
    )  # only the fees of place and of the failed reject
    assert chain.listing(market.listing_id).stock == 5
    assert chain.shop_reputation(market.shop_id).orders_refunded == 0


def test_cancel_only_by_the_buyer() -> None:
    market = new_market(stock=5)
    chain = market.chain
    order_id = market.place(BUYER, 2)
    assert_fails(
        chain.send(MERCHANT, "order_cancel", {"order_id": order_id}), "forbidden", "sender"
    )
    assert_fails(chain.send(BUYER_2, "order_cancel", {"order_id": order_id}), "forbidden", "sender")
    before = chain.balance(BUYER)
    chain.must(BUYER, "order_cancel", {"order_id": order_id})
    assert chain.order(order_id).state == "cancelled"
    assert chain.balance(BUYER) == before + 2 * PRICE - 10
    assert chain.listing(market.listing_id).stock == 5


# ---------------------------------------------------------------------- shipping


def test_ship_records_the_carrier_and_the_escrow_timeout() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("accepted")
    chain.must(
        MERCHANT,
        "order_ship",
        {
            "order_id": order_id,
            "carrier": CARRIER.address,
            "tracking": "SF123",
            "shipping_for_carrier": b"resealed",
        },
    )
    order = chain.order(order_id)
    assert (order.state, order.carrier, order.tracking, order.shipping_for_carrier) == (
        "shipped",
        CARRIER.address,
        "SF123",
        b"resealed",
    )
    assert (
        order.shipped_at == chain.time
        and order.deadline == chain.time + chain.params.escrow_timeout_ms
    )
    assert (
        order.history[-1]["carrier"] == CARRIER.address and order.history[-1]["tracking"] == "SF123"
    )


def test_ship_straight_from_placed() -> None:
    market = new_market()
    order_id = market.place()
    market.step(order_id, "ship")
    assert market.chain.order(order_id).state == "shipped"
    assert market.chain.order(order_id).accepted_at is None


def ship(chain: Chain, order_id: bytes, carrier: KeyPair, merchant: KeyPair = MERCHANT) -> Any:
    return chain.send(
        merchant, "order_ship", {"order_id": order_id, "carrier": carrier.address, "tracking": "T"}
    )


def test_carrier_may_be_neither_the_buyer_nor_the_merchant_and_must_hold_the_role() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.place(BUYER_2)  # BUYER_2 holds `carrier`
    assert_fails(ship(chain, order_id, BUYER_2), "forbidden", "payload.carrier")
    assert_fails(ship(chain, order_id, OUTSIDER), "forbidden", "payload.carrier")
    assert_fails(ship(chain, order_id, ARBITER), "forbidden", "payload.carrier")
    own = new_market(chain, MERCHANT_2)  # MERCHANT_2 holds `carrier`
    other_order = own.place(BUYER)
    assert_fails(ship(chain, other_order, MERCHANT_2, MERCHANT_2), "forbidden", "payload.carrier")
    assert ship(chain, order_id, CARRIER_2).ok


def test_ship_precedence_not_found_forbidden_invalid_state() -> None:
    market = new_market()
    chain = market.chain
    completed = market.order_in("completed")
    # not_found beats a sender who is not the merchant
    assert ship(chain, b"\x05" * 32, CARRIER, BUYER).code == "not_found"
    # the sender's authority beats the state
    assert_fails(ship(chain, completed, CARRIER, BUYER), "forbidden", "sender")
    # a forbidden carrier beats the state too (R12: forbidden before invalid_state)
    assert_fails(ship(chain, completed, OUTSIDER), "forbidden", "payload.carrier")
    assert_fails(ship(chain, completed, CARRIER), "invalid_state", "payload.order_id")


@pytest.mark.parametrize("status", ["picked_up", "in_transit", "out_for_delivery", "exception"])
def test_shipment_updates_other_than_delivered_keep_the_order_shipped(status: str) -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("shipped")
    deadline = chain.order(order_id).deadline
    chain.must(
        CARRIER,
        "shipment_update",
        {"order_id": order_id, "status": status, "location": "Hub", "note": "n"},
    )
    order = chain.order(order_id)
    assert order.state == "shipped" and order.deadline == deadline
    assert {
        k: order.history[-1][k] for k in ("event", "state", "status", "location", "note", "tx")
    } == {
        "event": "shipment_update",
        "state": "shipped",
        "status": status,
        "location": "Hub",
        "note": "n",
        "tx": chain.last_tx_hash,
    }


def test_delivered_moves_to_delivered_and_only_the_orders_carrier_reports() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("shipped")
    update = {"order_id": order_id, "status": "delivered", "location": "door"}
    assert_fails(chain.send(CARRIER_2, "shipment_update", update), "forbidden", "sender")
    assert_fails(chain.send(MERCHANT, "shipment_update", update), "forbidden", "sender")
    assert_fails(chain.send(BUYER, "shipment_update", update), "forbidden", "sender")
    # revoking the carrier's role later does not touch the order (§4)
    chain.must(REGISTRAR, "role_revoke", {"account": CARRIER.address, "role": "carrier"})
    chain.must(CARRIER, "shipment_update", update)
    order = chain.order(order_id)
    assert order.state == "delivered" and order.delivered_at == chain.time
    assert order.deadline == chain.time + chain.params.confirm_window_ms


# ---------------------------------------------------------------------- confirm and history


@pytest.mark.parametrize("start", ["shipped", "delivered", "return_requested"])
def test_confirm_pays_the_merchant(start: str) -> None:
    market = new_market(stock=4)
    chain = market.chain
    order_id = market.order_in(start, quantity=2)
    merchant_before = chain.balance(MERCHANT)
    assert_fails(
        chain.send(MERCHANT, "order_confirm", {"order_id": order_id}), "forbidden", "sender"
    )
    chain.must(BUYER, "order_confirm", {"order_id": order_id})
    order = chain.order(order_id)
    assert (order.state, order.escrow, order.merchant_paid) == ("completed", 0, 2 * PRICE)
    assert (
        chain.balance(MERCHANT) == merchant_before - 10 + 2 * PRICE
    )  # the fee of its failed confirm
    listing = chain.listing(market.listing_id)
    assert (listing.stock, listing.sold) == (2, 2)
    reputation = chain.shop_reputation(market.shop_id)
    assert (reputation.orders_completed, reputation.units_sold, reputation.revenue) == (
        1,
        2,
        2 * PRICE,
    )
    assert chain.total_money() == chain.genesis.total_supply()


def test_history_records_every_change_with_time_height_and_tx() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.place()
    expected = [("order_place", "placed", chain.height, chain.time, order_id)]
    for action, event, state in [
        ("accept", "order_accept", "accepted"),
        ("ship", "order_ship", "shipped"),
        ("deliver", "shipment_update", "delivered"),
    ]:
        market.step(order_id, action)
        expected.append((event, state, chain.height, chain.time, chain.last_tx_hash))
    deadline = chain.order(order_id).deadline
    assert deadline is not None
    chain.advance_to(deadline)
    expected.append(("deadline", "completed", chain.height, deadline, "deadline"))
    history = chain.order(order_id).history
    assert [(e["event"], e["state"], e["height"], e["time"], e["tx"]) for e in history] == expected
