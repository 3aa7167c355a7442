"""Digital goods (R41): digital listings and orders, `order_deliver` from placed or accepted,
R15's confirm window after a delivery, `order_ship` and `return_request` refused, the R12
precedence of every refusal, and what ends a digital order: money, points (R21), reputation
(R20), reviews (R19) and stock (a delivered order returns none)."""

from __future__ import annotations

import pytest

from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.schema import MAX_DELIVERY_BYTES, MIN_DELIVERY_BYTES
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    BUYER,
    BUYER_2,
    CARRIER,
    MERCHANT,
    OUTSIDER,
    SEALED_CONTENT,
    Market,
    assert_fails,
    list_goods,
    new_market,
)

PRICE = 1_000_000
STOCK = 10
DIGITAL_PATHS: dict[str, tuple[str, ...]] = {
    "placed": (),
    "accepted": ("accept",),
    "delivered": ("deliver_digital",),
    "disputed": ("deliver_digital", "dispute"),
    "completed": ("deliver_digital", "confirm"),
    "cancelled": ("cancel",),
    "rejected": ("reject",),
    "expired": ("expire",),
    "refunded": ("deliver_digital", "refund"),
    "resolved": ("deliver_digital", "dispute", "resolve"),
}
"""The way into every state a digital order can reach (R41 has no shipped or return_requested)."""


def digital_market(with_arbiter: bool = True, points_bps: int = 100) -> Market:
    """A shop with one digital listing of `STOCK` units at `PRICE`."""
    return new_market(with_arbiter=with_arbiter, price=PRICE, stock=STOCK, points_bps=points_bps, digital=True)


def digital_order(market: Market, state: str, buyer: KeyPair = BUYER, quantity: int = 1, **payload: object) -> bytes:
    """A new digital order driven into `state`."""
    order_id = market.drive(market.place(buyer, quantity, **payload), DIGITAL_PATHS[state])
    assert market.chain.order(order_id).state == state
    return order_id


def deliver(market: Market, order_id: bytes, sender: KeyPair = MERCHANT, content: bytes = SEALED_CONTENT) -> Receipt:
    return market.chain.send(sender, "order_deliver", {"order_id": order_id, "content": content})


def stock(market: Market) -> int:
    return market.chain.listing(market.listing_id).stock


# ---------------------------------------------------------------------- listings and orders


def test_a_digital_listing_and_its_orders_carry_the_flag_stored_only_when_true() -> None:
    market = digital_market()
    chain = market.chain
    assert chain.listing(market.listing_id).digital is True
    parcels = list_goods(chain, market.shop_id, digital=False)
    plain = list_goods(chain, market.shop_id)
    assert chain.listing(parcels).digital is None and chain.listing(plain).digital is None
    assert chain.order(market.place()).digital is True
    parcel_market = Market(chain, market.shop_id, parcels)
    assert chain.order(parcel_market.place()).digital is None


def test_digital_with_item_ids_is_invalid_field_first() -> None:
    market = digital_market()
    chain = market.chain
    payload = {"shop_id": market.shop_id, "title": "Key", "price": 1, "stock": 1, "item_ids": ["no-such-item"],
               "digital": True}
    assert chain.admit(MERCHANT, "listing_create", payload) is None  # a rule check, not admission (R11)
    assert_fails(chain.send(MERCHANT, "listing_create", payload), "invalid_field", "payload.digital")
    # before the shop's existence, the sender's authority and the items: schema comes first (R12)
    assert_fails(chain.send(OUTSIDER, "listing_create", {**payload, "shop_id": b"\x09" * 32}), "invalid_field",
                 "payload.digital")
    assert_fails(chain.send(MERCHANT, "listing_create", {**payload, "digital": False}), "not_found",
                 "item")


def test_the_order_deliver_payload_bounds_at_admission() -> None:
    market = digital_market()
    chain = market.chain
    order_id = market.place()
    for size, code in ((MIN_DELIVERY_BYTES - 1, "invalid_field"), (MIN_DELIVERY_BYTES, None),
                       (MAX_DELIVERY_BYTES, None), (MAX_DELIVERY_BYTES + 1, "invalid_field")):
        assert chain.admit(MERCHANT, "order_deliver", {"order_id": order_id, "content": b"\x01" * size}) == code
    assert chain.admit(MERCHANT, "order_deliver", {"order_id": order_id}) == "invalid_field"
    assert chain.admit(MERCHANT, "order_deliver", {"order_id": order_id, "content": SEALED_CONTENT,
                                                   "note": "x"}) == "invalid_field"
    short = chain.execute(MERCHANT, "order_deliver", {"order_id": order_id, "content": b"\x01" * 47})
    assert_fails(short, "invalid_field", "payload.content")
    assert deliver(market, order_id, content=b"\x02" * MAX_DELIVERY_BYTES).ok
    assert chain.order(order_id).delivery == b"\x02" * MAX_DELIVERY_BYTES


# ---------------------------------------------------------------------- order_deliver


def test_deliver_from_placed_accepts_and_delivers_at_once() -> None:
    market = digital_market()
    chain = market.chain
    order_id = market.place()
    receipt = deliver(market, order_id)
    assert receipt.ok
    assert {"type": "order_state", "order_id": order_id, "from": "placed", "to": "delivered",
            "by": "order_deliver"} in receipt.events
    order = chain.order(order_id)
    assert (order.state, order.delivery, order.delivered_at, order.accepted_at) == (
        "delivered", SEALED_CONTENT, chain.time, None)
    assert order.deadline == chain.time + chain.params.confirm_window_ms
    assert [entry for entry in chain.schedule() if entry[1] == order_id] == [(order.deadline, order_id)]
    entry = order.history[-1]
    assert entry == {"event": "order_deliver", "state": "delivered", "height": chain.height, "time": chain.time,
                     "tx": chain.last_tx_hash}  # the content is kept once, never in the history
    assert (order.escrow, stock(market)) == (PRICE, STOCK - 1)
    assert chain.total_money() == chain.genesis.total_supply()


def test_deliver_from_accepted_keeps_accepted_at() -> None:
    market = digital_market()
    chain = market.chain
    order_id = digital_order(market, "accepted")
    accepted_at = chain.order(order_id).accepted_at
    assert deliver(market, order_id).ok
    order = chain.order(order_id)
    assert (order.state, order.accepted_at, order.delivered_at) == ("delivered", accepted_at, chain.time)
    assert [entry["event"] for entry in order.history] == ["order_place", "order_accept", "order_deliver"]


def test_order_deliver_precedence_not_found_forbidden_invalid_state() -> None:
    market = digital_market()
    chain = market.chain
    digital = market.place()
    parcel_market = Market(chain, market.shop_id, list_goods(chain, market.shop_id))
    parcel = parcel_market.place()
    assert_fails(deliver(market, b"\x05" * 32, BUYER), "not_found", "payload.order_id")
    for intruder in (BUYER, BUYER_2, CARRIER, ARBITER):  # even on a parcel order: authority first
        assert_fails(deliver(market, digital, intruder), "forbidden", "sender")
        assert_fails(deliver(market, parcel, intruder), "forbidden", "sender")
    assert_fails(deliver(market, parcel), "invalid_state", "payload.order_id")
    parcel_market.step(parcel, "accept")
    assert_fails(deliver(market, parcel), "invalid_state", "payload.order_id")
    assert chain.order(parcel).state == "accepted" and chain.order(digital).state == "placed"


@pytest.mark.parametrize("state", [state for state in DIGITAL_PATHS if state not in ("placed", "accepted")])
def test_order_deliver_only_from_placed_or_accepted(state: str) -> None:
    market = digital_market()
    order_id = digital_order(market, state)
    before = market.chain.order(order_id)
    assert_fails(deliver(market, order_id, content=b"\x07" * 64), "invalid_state", "payload.order_id")
    assert_fails(deliver(market, order_id, BUYER), "forbidden", "sender")
    assert market.chain.order(order_id) == before


def test_a_digital_order_is_never_shipped() -> None:
    market = digital_market()
    chain = market.chain
    for state in ("placed", "accepted"):
        order_id = digital_order(market, state)

        def ship(sender: KeyPair, carrier: KeyPair, order_id: bytes = order_id) -> Receipt:
            return chain.send(sender, "order_ship", {"order_id": order_id, "carrier": carrier.address,
                                                     "tracking": "T"})

        assert_fails(ship(BUYER, CARRIER), "forbidden", "sender")
        assert_fails(ship(MERCHANT, BUYER), "forbidden", "payload.carrier")  # the carrier's checks come first
        assert_fails(ship(MERCHANT, OUTSIDER), "forbidden", "payload.carrier")
        assert_fails(ship(MERCHANT, CARRIER), "invalid_state", "payload.order_id")
        assert chain.order(order_id).state == state and chain.order(order_id).carrier is None


def test_a_digital_order_is_never_returned() -> None:
    market = digital_market()
    chain = market.chain
    order_id = digital_order(market, "delivered")
    request = {"order_id": order_id, "reason": "changed my mind"}
    assert_fails(chain.send(BUYER, "return_request", {**request, "order_id": b"\x03" * 32}), "not_found",
                 "payload.order_id")
    assert_fails(chain.send(MERCHANT, "return_request", request), "forbidden", "sender")
    assert_fails(chain.send(BUYER, "return_request", request), "invalid_state", "payload.order_id")
    placed = market.place()
    assert_fails(chain.send(BUYER, "return_request", {**request, "order_id": placed}), "invalid_state",
                 "payload.order_id")
    assert chain.order(order_id).state == "delivered"


# ---------------------------------------------------------------------- how a delivered order ends


def test_confirm_completes_pays_the_merchant_earns_points_and_counts_the_sale() -> None:
    market = digital_market(points_bps=500)
    chain = market.chain
    order_id = digital_order(market, "delivered", quantity=2)
    merchant_before = chain.balance(MERCHANT)
    assert_fails(chain.send(MERCHANT, "order_confirm", {"order_id": order_id}), "forbidden", "sender")
    chain.must(BUYER, "order_confirm", {"order_id": order_id})
    order = chain.order(order_id)
    assert (order.state, order.escrow, order.merchant_paid, order.delivery) == (
        "completed", 0, 2 * PRICE, SEALED_CONTENT)
    assert chain.balance(MERCHANT) == merchant_before - 10 + 2 * PRICE
    assert chain.points(market.shop_id, BUYER) == 2 * PRICE * 500 // 10000
    listing = chain.listing(market.listing_id)
    assert (listing.stock, listing.sold) == (STOCK - 2, 2)
    reputation = chain.shop_reputation(market.shop_id)
    assert (reputation.orders_completed, reputation.units_sold, reputation.revenue) == (1, 2, 2 * PRICE)
    assert chain.merchant_reputation(MERCHANT).orders_completed == 1
    assert chain.total_money() == chain.genesis.total_supply()


def test_silence_completes_a_delivered_order_at_its_confirm_deadline() -> None:
    market = digital_market()
    chain = market.chain
    order_id = digital_order(market, "delivered")
    deadline = chain.order(order_id).deadline
    assert deadline is not None
    merchant_before = chain.balance(MERCHANT)
    chain.advance_to(deadline - 1)
    assert chain.order(order_id).state == "delivered"
    chain.advance_to(deadline)
    order = chain.order(order_id)
    assert (order.state, order.ended_at, order.deadline, order.history[-1]["tx"]) == (
        "completed", deadline, None, "deadline")
    assert chain.balance(MERCHANT) == merchant_before + PRICE
    assert (stock(market), chain.listing(market.listing_id).sold) == (STOCK - 1, 1)
    assert chain.schedule() == []


def earn_points(market: Market, buyer: KeyPair = BUYER) -> int:
    """Complete one order so that `buyer` holds points of the shop; their number."""
    digital_order(market, "completed", buyer)
    return market.chain.points(market.shop_id, buyer)


def test_a_full_refund_of_a_delivered_order_returns_money_and_points_but_no_stock() -> None:
    market = digital_market(points_bps=1000)
    chain = market.chain
    points = earn_points(market)
    order_id = digital_order(market, "delivered", redeem_points=points)
    assert chain.points(market.shop_id, BUYER) == 0
    buyer_before = chain.balance(BUYER)
    chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": PRICE // 4})
    assert chain.order(order_id).state == "delivered"
    chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": PRICE - points - PRICE // 4})
    order = chain.order(order_id)
    assert (order.state, order.escrow, order.refunded, order.merchant_paid) == (
        "refunded", 0, PRICE - points, 0)
    assert chain.balance(BUYER) == buyer_before + PRICE - points
    assert chain.points(market.shop_id, BUYER) == points  # the merchant got nothing (R21)
    assert stock(market) == STOCK - 2  # the delivered content is not taken back (R41)
    assert chain.listing(market.listing_id).sold == 1
    assert chain.shop_reputation(market.shop_id).orders_refunded == 1
    assert chain.total_money() == chain.genesis.total_supply()


def test_a_partial_refund_then_silence_pays_the_merchant_the_rest_and_keeps_points_spent() -> None:
    market = digital_market(points_bps=1000)
    chain = market.chain
    points = earn_points(market)
    order_id = digital_order(market, "delivered", redeem_points=points)
    chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": 1_000})
    deadline = chain.order(order_id).deadline
    assert deadline is not None
    chain.advance_to(deadline)
    order = chain.order(order_id)
    assert (order.state, order.refunded, order.merchant_paid) == ("completed", 1_000, PRICE - points - 1_000)
    assert chain.points(market.shop_id, BUYER) == (PRICE - points - 1_000) * 1000 // 10000
    assert stock(market) == STOCK - 2


@pytest.mark.parametrize("buyer_share", ["all", "none"])
def test_a_dispute_over_a_delivered_order_resolves_without_stock_back(buyer_share: str) -> None:
    market = digital_market(points_bps=1000)
    chain = market.chain
    points = earn_points(market)
    order_id = digital_order(market, "delivered", redeem_points=points)
    assert_fails(chain.send(MERCHANT, "dispute_open", {"order_id": order_id, "reason": "r"}), "invalid_state",
                 "payload.order_id")  # the merchant opens disputes only from return_requested
    chain.must(BUYER, "dispute_open", {"order_id": order_id, "reason": "the key does not work"})
    escrow = chain.order(order_id).escrow
    fee = escrow * chain.params.arbiter_fee_bps // 10000
    buyer_amount = escrow - fee if buyer_share == "all" else 0
    chain.must(ARBITER, "dispute_resolve", {"order_id": order_id, "buyer_amount": buyer_amount, "ruling": "r"})
    order = chain.order(order_id)
    assert (order.state, order.refunded, order.merchant_paid) == ("resolved", buyer_amount, escrow - fee - buyer_amount)
    assert stock(market) == STOCK - 2
    assert chain.points(market.shop_id, BUYER) == (points if buyer_share == "all" else 0)  # R21
    reputation = chain.shop_reputation(market.shop_id)
    assert (reputation.disputes_lost, reputation.disputes_won) == ((1, 0) if buyer_share == "all" else (0, 1))
    assert chain.total_money() == chain.genesis.total_supply()


def test_an_unresolved_dispute_is_refunded_by_deadline_without_stock_back() -> None:
    market = digital_market()
    chain = market.chain
    order_id = digital_order(market, "disputed")
    deadline = chain.order(order_id).deadline
    assert deadline is not None
    buyer_before = chain.balance(BUYER)
    chain.advance_to(deadline)
    order = chain.order(order_id)
    assert (order.state, order.history[-1]["tx"]) == ("refunded", "deadline")
    assert chain.balance(BUYER) == buyer_before + PRICE
    assert stock(market) == STOCK - 1
    reputation = chain.shop_reputation(market.shop_id)
    assert (reputation.orders_refunded, reputation.disputes_won, reputation.disputes_lost) == (1, 0, 0)


def test_no_disputes_over_a_digital_order_of_a_shop_without_arbiters() -> None:
    market = digital_market(with_arbiter=False)
    chain = market.chain
    order_id = digital_order(market, "delivered")
    assert_fails(chain.send(BUYER, "dispute_open", {"order_id": order_id, "reason": "r"}), "invalid_state",
                 "payload.order_id")
    chain.advance(chain.params.confirm_window_ms)
    assert chain.order(order_id).state == "completed"


# ---------------------------------------------------------------------- an undelivered order returns its stock


@pytest.mark.parametrize(
    ("path", "end"),
    [
        (("reject",), "rejected"),
        (("accept", "reject"), "rejected"),
        (("cancel",), "cancelled"),
        (("expire",), "expired"),
        (("accept", "expire"), "expired"),
        (("accept", "refund"), "refunded"),
    ],
)
def test_an_undelivered_digital_order_returns_stock_money_and_points(path: tuple[str, ...], end: str) -> None:
    market = digital_market(points_bps=1000)
    chain = market.chain
    points = earn_points(market)
    buyer_before = chain.balance(BUYER)
    order_id = market.drive(market.place(BUYER, 3, redeem_points=points), path)
    order = chain.order(order_id)
    assert (order.state, order.delivery, order.refunded) == (end, None, 3 * PRICE - points)
    assert stock(market) == STOCK - 1
    assert chain.points(market.shop_id, BUYER) == points
    cancels = path == ("cancel",)
    assert chain.balance(BUYER) == buyer_before - 10 - 10 * cancels
    reputation = chain.shop_reputation(market.shop_id)
    assert (reputation.orders_expired, reputation.orders_refunded) == (end == "expired", end == "refunded")
    assert chain.total_money() == chain.genesis.total_supply()


def test_the_accept_and_ship_windows_bound_an_undelivered_digital_order() -> None:
    market = digital_market()
    chain = market.chain
    placed = market.place()
    accepted = digital_order(market, "accepted")
    assert chain.order(placed).deadline == chain.order(placed).placed_at + chain.params.accept_window_ms
    ship_deadline = chain.order(accepted).deadline
    assert ship_deadline == chain.order(accepted).accepted_at + chain.params.ship_window_ms
    chain.advance(chain.params.ship_window_ms + chain.params.accept_window_ms)
    assert (chain.order(placed).state, chain.order(accepted).state) == ("expired", "expired")
    assert stock(market) == STOCK


# ---------------------------------------------------------------------- reviews


@pytest.mark.parametrize("end", ["completed", "refunded", "resolved"])
def test_the_buyer_reviews_a_digital_order_once_it_ended(end: str) -> None:
    market = digital_market()
    chain = market.chain
    order_id = digital_order(market, "delivered")
    review = {"order_id": order_id, "rating": 4, "text": "instant delivery"}
    assert_fails(chain.send(BUYER, "review_submit", review), "invalid_state", "payload.order_id")
    market.drive(order_id, DIGITAL_PATHS[end][1:])
    assert_fails(chain.send(MERCHANT, "review_submit", review), "forbidden", "sender")
    chain.must(BUYER, "review_submit", review)
    chain.must(MERCHANT, "review_reply", {"order_id": order_id, "text": "thanks"})
    assert chain.order(order_id).review["rating"] == 4  # type: ignore[index]
    assert chain.shop_reputation(market.shop_id).rating_count == 1
