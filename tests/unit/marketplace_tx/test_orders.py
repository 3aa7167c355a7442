"""Orders: the §5 state machine, `order_place` (R13), fulfilment, history (R18), R12 precedence."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace_tx.primitives.crypto import KeyPair
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ALL_STATES,
    ARBITER,
    ARBITER_2,
    BUYER,
    BUYER_2,
    BUYER_3,
    CARRIER,
    CARRIER_2,
    FUNDS,
    MERCHANT,
    MERCHANT_2,
    NON_TERMINAL_STATES,
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

# ---------------------------------------------------------------------- the §5 table, exhaustively

EVENTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "order_accept": ("merchant", "order_accept", {}),
    "order_reject": ("merchant", "order_reject", {"reason": "no"}),
    "order_cancel": ("buyer", "order_cancel", {}),
    "order_ship": ("merchant", "order_ship", {"carrier": CARRIER.address, "tracking": "T-1"}),
    "shipment_update": ("carrier", "shipment_update", {"status": "delivered", "location": "door"}),
    "order_confirm": ("buyer", "order_confirm", {}),
    "return_request": ("buyer", "return_request", {"reason": "broken"}),
    "order_refund": ("merchant", "order_refund", {"amount": 1}),
    "dispute_open": ("buyer", "dispute_open", {"reason": "help"}),
    "dispute_open_by_merchant": ("merchant", "dispute_open", {"reason": "help"}),
    "dispute_resolve": ("arbiter", "dispute_resolve", {"buyer_amount": 0, "ruling": "ok"}),
    "review_submit": ("buyer", "review_submit", {"rating": 4}),
}
"""Every order transaction, sent by the party allowed to send it."""

ALLOWED: dict[str, dict[str, str]] = {
    "order_accept": {"placed": "accepted"},
    "order_reject": {"placed": "rejected", "accepted": "rejected"},
    "order_cancel": {"placed": "cancelled"},
    "order_ship": {"placed": "shipped", "accepted": "shipped"},
    "shipment_update": {"shipped": "delivered"},
    "order_confirm": {
        "shipped": "completed",
        "delivered": "completed",
        "return_requested": "completed",
    },
    "return_request": {"shipped": "return_requested", "delivered": "return_requested"},
    "order_refund": {
        s: s for s in ("accepted", "shipped", "delivered", "return_requested", "disputed")
    },
    "dispute_open": {
        "shipped": "disputed",
        "delivered": "disputed",
        "return_requested": "disputed",
    },
    "dispute_open_by_merchant": {"return_requested": "disputed"},
    "dispute_resolve": {"disputed": "resolved"},
    "review_submit": {"completed": "completed", "refunded": "refunded", "resolved": "resolved"},
}
"""§5 (and R19 for reviews): from-state → to-state of each event. Nothing else is a transition."""

NO_CARRIER_STATES = ("placed", "accepted", "cancelled", "rejected", "expired")
"""States reached without shipping: the order names no carrier, so nobody is "the order's
carrier" and a `shipment_update` is `forbidden` (authority precedes state, R12)."""


@pytest.fixture(scope="module")
def markets_by_state() -> dict[str, tuple[Market, bytes]]:
    """One chain per state, each with an order (with an arbiter, shipped via CARRIER) in it."""
    market = new_market()
    result = {}
    for state in ALL_STATES:
        fork = market.fork()
        result[state] = (fork, fork.order_in(state))
    return result


def party(market: Market, role: str) -> KeyPair:
    return {"merchant": market.merchant, "buyer": BUYER, "carrier": CARRIER, "arbiter": ARBITER}[
        role
    ]


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_state_event_pair(
    markets_by_state: dict[str, tuple[Market, bytes]], state: str, event: str
) -> None:
    market, order_id = markets_by_state[state]
    market = market.fork()
    role, tx_type, payload = EVENTS[event]
    receipt = market.chain.send(party(market, role), tx_type, {"order_id": order_id, **payload})
    order = market.chain.order(order_id)
    if state in ALLOWED[event]:
        assert receipt.ok, f"{receipt.code}: {receipt.message}"
        assert order.state == ALLOWED[event][state]
    else:
        expected = (
            "forbidden"
            if event == "shipment_update" and state in NO_CARRIER_STATES
            else "invalid_state"
        )
        assert_fails(receipt, expected, "sender" if expected == "forbidden" else "payload.order_id")
        assert order.state == state


def test_the_transition_table_as_a_whole(markets_by_state: dict[str, tuple[Market, bytes]]) -> None:
    """The same cross product, summarised: the set of (state, event) that succeed is exactly §5."""
    succeeded = set()
    for state, (market, order_id) in markets_by_state.items():
        for event, (role, tx_type, payload) in EVENTS.items():
            fork = market.fork()
            if fork.chain.send(party(fork, role), tx_type, {"order_id": order_id, **payload}).ok:
                succeeded.add((state, event))
    assert succeeded == {(state, event) for event, moves in ALLOWED.items() for state in moves}


def test_terminal_states_have_no_deadline_and_others_have_one(
    markets_by_state: dict[str, tuple[Market, bytes]],
) -> None:
    for state, (market, order_id) in markets_by_state.items():
        order = market.chain.order(order_id)
        scheduled = [entry for entry in market.chain.schedule() if entry[1] == order_id]
        if state in NON_TERMINAL_STATES:
            assert order.deadline is not None and scheduled == [(order.deadline, order_id)]
        else:
            assert order.deadline is None and scheduled == [], state
            assert order.escrow == 0 and order.ended_at is not None


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


SIMPLE_EVENTS = {
    "order_accept": ("merchant", BUYER, {}, {"order_id": b"\x01" * 31}),
    "order_reject": ("merchant", BUYER, {"reason": "r"}, {"reason": "r" * 257}),
    "order_cancel": ("buyer", MERCHANT, {}, {"order_id": "x"}),
    "order_confirm": ("buyer", MERCHANT, {}, {"extra": 1}),
    "shipment_update": ("carrier", CARRIER_2, {"status": "delivered", "location": "d"}, {"status": "lost"}),
    "review_reply": ("merchant", BUYER, {"text": "t"}, {"text": "t" * 1001}),
}
"""tx type → (rightful party, a wrong sender, payload, a schema fault)."""


@pytest.mark.parametrize("tx_type", sorted(SIMPLE_EVENTS))
def test_precedence_of_the_simple_order_transactions(
    markets_by_state: dict[str, tuple[Market, bytes]], tx_type: str
) -> None:
    role, intruder, payload, fault = SIMPLE_EVENTS[tx_type]
    market, order_id = markets_by_state["resolved"]  # terminal, shipped, no review: wrong for all
    chain = market.fork().chain
    # schema beats existence (checked at execution too, not only at admission)
    receipt = chain.execute(intruder, tx_type, {"order_id": b"\x0e" * 32, **payload, **fault})
    assert receipt.code == "invalid_field", receipt.message
    # existence beats authority
    unknown = chain.send(intruder, tx_type, {"order_id": b"\x0e" * 32, **payload})
    assert_fails(unknown, "not_found", "payload.order_id")
    if tx_type == "review_reply":  # a reply needs a review (not_found first), then the merchant, once
        chain.must(BUYER, "review_submit", {"order_id": order_id, "rating": 3})
        assert chain.send(MERCHANT, tx_type, {"order_id": order_id, **payload}).ok
    # authority beats state (and already_exists)
    assert_fails(chain.send(intruder, tx_type, {"order_id": order_id, **payload}), "forbidden", "sender")
    rightful = chain.send(party(market, role), tx_type, {"order_id": order_id, **payload})
    expected = "already_exists" if tx_type == "review_reply" else "invalid_state"
    assert_fails(rightful, expected, "payload.order_id")
