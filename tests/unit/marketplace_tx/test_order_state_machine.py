"""Orders: the §5 state machine (every state and event pair, deadlines only on open orders) and the R12 precedence of the simple order transactions."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace_tx.primitives.crypto import KeyPair
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ALL_STATES,
    ARBITER,
    BUYER,
    CARRIER,
    CARRIER_2,
    MERCHANT,
    NON_TERMINAL_STATES,
    Market,
    assert_fails,
    new_market,
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
