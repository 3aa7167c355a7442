"""Deadlines enforced by the state machine at the start of every block (R15, R16, R29)."""

from __future__ import annotations

import pytest

from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.deadlines import next_deadline
from tests.unit.marketplace_tx.marketplace_fixtures import (
    BUYER,
    BUYER_2,
    BUYER_3,
    MERCHANT,
    OUTSIDER,
    TERMINAL_STATES,
    Chain,
    Market,
    new_market,
)

PRICE = 1_000_000

R15 = [
    # state, time it was entered, window, outcome, who receives the escrow
    ("placed", "placed_at", "accept_window_ms", "expired", "buyer"),
    ("accepted", "accepted_at", "ship_window_ms", "expired", "buyer"),
    ("shipped", "shipped_at", "escrow_timeout_ms", "completed", "merchant"),
    ("delivered", "delivered_at", "confirm_window_ms", "completed", "merchant"),
    ("return_requested", "requested_at", "response_window_ms", "refunded", "buyer"),
    ("disputed", "opened_at", "arbitration_window_ms", "refunded", "buyer"),
]


def earn_points(market: Market, buyer: KeyPair = BUYER) -> int:
    """Complete one order so that `buyer` holds points at the market's shop."""
    market.order_in("completed", buyer=buyer)
    return market.chain.points(market.shop_id, buyer)


@pytest.mark.parametrize(
    ("state", "entered", "window", "outcome", "payee"), R15, ids=[row[0] for row in R15]
)
def test_each_deadline_fires_exactly_at_its_time(
    state: str, entered: str, window: str, outcome: str, payee: str
) -> None:
    market = new_market(stock=5, points_bps=1000, max_redeem_bps=5000)
    chain = market.chain
    held = earn_points(market)
    assert held == PRICE * 1000 // 10000
    order_id = market.order_in(state, quantity=2, redeem_points=held)
    order = chain.order(order_id)
    escrow = 2 * PRICE - held
    assert order.escrow == escrow
    assert order.deadline == getattr(order, entered) + getattr(chain.params, window)
    buyer_before, merchant_before = chain.balance(BUYER), chain.balance(MERCHANT)
    stock_before = chain.listing(market.listing_id).stock

    chain.advance_to(order.deadline - 1)  # type: ignore[operator]
    assert chain.order(order_id).state == state
    assert chain.last_block is not None and chain.last_block.block_events == ()
    assert (chain.balance(BUYER), chain.balance(MERCHANT)) == (buyer_before, merchant_before)

    chain.advance_to(order.deadline)  # type: ignore[arg-type]
    ended = chain.order(order_id)
    assert ended.state == outcome and ended.escrow == 0 and ended.deadline is None
    assert ended.ended_at == order.deadline
    assert chain.last_block.block_events == (
        {
            "type": "order_state",
            "order_id": order_id,
            "from": state,
            "to": outcome,
            "by": "deadline",
        },
    )
    assert {k: ended.history[-1][k] for k in ("event", "state", "time", "tx")} == {
        "event": "deadline",
        "state": outcome,
        "time": order.deadline,
        "tx": "deadline",
    }
    assert order_id not in [entry[1] for entry in chain.schedule()]
    reputation = chain.shop_reputation(market.shop_id)
    if payee == "merchant":
        assert chain.balance(MERCHANT) == merchant_before + escrow
        assert chain.balance(BUYER) == buyer_before
        assert (
            chain.points(market.shop_id, BUYER) == escrow * 1000 // 10000
        )  # earned; the redeemed stay spent
        assert chain.listing(market.listing_id).stock == stock_before
        assert reputation.orders_completed == 2
    else:
        assert chain.balance(BUYER) == buyer_before + escrow
        assert chain.balance(MERCHANT) == merchant_before
        assert (
            chain.points(market.shop_id, BUYER) == held
        )  # the merchant got nothing: points come back
        assert chain.listing(market.listing_id).stock == stock_before + 2
        counter = "orders_expired" if outcome == "expired" else "orders_refunded"
        assert getattr(reputation, counter) == 1
        assert (reputation.disputes_won, reputation.disputes_lost) == (0, 0)
    assert chain.total_money() == chain.genesis.total_supply()


def test_deadlines_fire_before_the_blocks_transactions() -> None:
    market = new_market()
    chain = market.chain
    early, late = market.place(BUYER), market.place(BUYER_2)
    deadline = chain.order(early).deadline
    assert deadline is not None
    receipt = chain.send(MERCHANT, "order_accept", {"order_id": early}, time=deadline - 1)
    assert receipt.ok  # one ms before its deadline the merchant is in time
    late_deadline = chain.order(late).deadline
    assert late_deadline is not None
    receipt = chain.send(MERCHANT, "order_accept", {"order_id": late}, time=late_deadline)
    assert receipt.code == "invalid_state"  # at its deadline it expired first
    assert chain.order(late).state == "expired"
    assert chain.last_block is not None and [
        e["order_id"] for e in chain.last_block.block_events
    ] == [late]


def test_orders_with_the_same_deadline_fire_in_order_id_order() -> None:
    market = new_market()
    chain = market.chain
    txs = [
        chain.sign(buyer, "order_place", market.place_payload())
        for buyer in (BUYER, BUYER_2, BUYER_3)
    ]
    chain.block(txs)
    order_ids = [tx.hash for tx in txs]
    assert len({chain.order(order_id).deadline for order_id in order_ids}) == 1
    result = chain.advance(chain.params.accept_window_ms)
    assert [event["order_id"] for event in result.block_events] == sorted(order_ids)


def test_orders_fire_in_deadline_then_order_id_order() -> None:
    market = new_market(stock=20)
    chain = market.chain
    order_ids = []
    for buyer in (BUYER, BUYER_2, BUYER_3, OUTSIDER, BUYER, BUYER_2):
        order_ids.append(market.place(buyer))
    # later orders have later deadlines, whatever their ids
    deadlines = {order_id: chain.order(order_id).deadline for order_id in order_ids}
    expected = sorted(order_ids, key=lambda order_id: (deadlines[order_id], order_id))
    assert expected != sorted(order_ids), (
        "the ids must disagree with the deadlines for this test to bite"
    )
    assert [entry[1] for entry in chain.schedule()] == expected
    assert next_deadline(chain.state()) == deadlines[expected[0]]
    result = chain.advance(10 * chain.params.accept_window_ms)
    assert [event["order_id"] for event in result.block_events] == expected
    assert next_deadline(chain.state()) is None


def test_one_late_block_fires_every_due_deadline_once() -> None:
    market = new_market(stock=20)
    chain = market.chain
    orders = {
        state: market.order_in(state)
        for state in ("placed", "accepted", "shipped", "delivered", "return_requested", "disputed")
    }
    result = chain.advance(chain.params.escrow_timeout_ms + 1)
    assert sorted(event["order_id"] for event in result.block_events) == sorted(orders.values())
    outcomes = {state: chain.order(order_id).state for state, order_id in orders.items()}
    assert outcomes == {
        "placed": "expired",
        "accepted": "expired",
        "shipped": "completed",
        "delivered": "completed",
        "return_requested": "refunded",
        "disputed": "refunded",
    }
    assert chain.schedule() == []
    assert chain.total_money() == chain.genesis.total_supply()


def test_terminal_orders_never_move_again() -> None:
    market = new_market(stock=20)
    chain = market.chain
    orders = {state: market.order_in(state) for state in TERMINAL_STATES}
    before = {state: chain.order(order_id) for state, order_id in orders.items()}
    result = chain.advance(100 * chain.params.escrow_timeout_ms)
    assert result.block_events == ()
    assert {state: chain.order(order_id) for state, order_id in orders.items()} == before


def test_an_idle_chain_has_nothing_scheduled() -> None:
    chain = Chain()
    assert next_deadline(chain.state()) is None
    assert chain.advance(10**9).block_events == ()
