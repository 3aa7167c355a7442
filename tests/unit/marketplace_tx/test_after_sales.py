"""After-sales: returns, refunds (R14 offers), disputes and their resolution (§5)."""

from __future__ import annotations

import pytest

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.primitives.crypto import KeyPair
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    ARBITER_2,
    BUYER,
    BUYER_2,
    CARRIER,
    MERCHANT,
    OUTSIDER,
    Chain,
    Market,
    assert_fails,
    new_market,
)

PRICE = 1_000_000
REFUNDABLE = ("accepted", "shipped", "delivered", "return_requested", "disputed")


def refund(market: Market, order_id: bytes, amount: int, sender: KeyPair = MERCHANT) -> Receipt:
    return market.chain.send(sender, "order_refund", {"order_id": order_id, "amount": amount})


def resolve(
    market: Market, order_id: bytes, buyer_amount: int, sender: KeyPair = ARBITER
) -> Receipt:
    payload = {"order_id": order_id, "buyer_amount": buyer_amount, "ruling": "split"}
    return market.chain.send(sender, "dispute_resolve", payload)


def dispute(market: Market, order_id: bytes, sender: KeyPair = BUYER) -> Receipt:
    return market.chain.send(sender, "dispute_open", {"order_id": order_id, "reason": "help"})


# ---------------------------------------------------------------------- return_request


@pytest.mark.parametrize("start", ["shipped", "delivered"])
def test_return_request_by_the_buyer(start: str) -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in(start)
    payload = {"order_id": order_id, "reason": "too bitter"}
    assert_fails(chain.send(MERCHANT, "return_request", payload), "forbidden", "sender")
    assert_fails(chain.send(CARRIER, "return_request", payload), "forbidden", "sender")
    chain.must(BUYER, "return_request", payload)
    order = chain.order(order_id)
    assert order.state == "return_requested" and order.requested_at == chain.time
    assert order.deadline == chain.time + chain.params.response_window_ms
    assert order.history[-1]["reason"] == "too bitter"
    assert order.escrow == PRICE


def test_return_request_precedence() -> None:
    market = new_market()
    chain = market.chain
    placed = market.place()
    assert (
        chain.send(MERCHANT, "return_request", {"order_id": b"\x03" * 32, "reason": ""}).code
        == "not_found"
    )
    assert_fails(
        chain.send(MERCHANT, "return_request", {"order_id": placed, "reason": ""}),
        "forbidden",
        "sender",
    )
    assert_fails(
        chain.send(BUYER, "return_request", {"order_id": placed, "reason": ""}),
        "invalid_state",
        "payload.order_id",
    )
    receipt = chain.execute(
        BUYER, "return_request", {"order_id": b"\x03" * 32, "reason": "x" * 257}
    )
    assert_fails(receipt, "invalid_field", "payload.reason")


# ---------------------------------------------------------------------- refunds


@pytest.mark.parametrize("start", REFUNDABLE)
def test_a_partial_refund_keeps_the_state(start: str) -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in(start)
    before, deadline = chain.balance(BUYER), chain.order(order_id).deadline
    chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": 250_000})
    order = chain.order(order_id)
    assert (order.state, order.escrow, order.refunded, order.deadline) == (
        start,
        750_000,
        250_000,
        deadline,
    )
    assert chain.balance(BUYER) == before + 250_000
    assert order.history[-1]["event"] == "order_refund" and order.history[-1]["amount"] == 250_000
    assert chain.last_block is not None
    assert chain.last_block.receipts[0].events == (
        {"type": "partial_refund", "order_id": order_id, "amount": 250_000, "escrow": 750_000},
    )
    chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": 1})
    assert chain.order(order_id).escrow == 749_999
    assert chain.total_money() == chain.genesis.total_supply()


@pytest.mark.parametrize("start", REFUNDABLE)
def test_refunding_the_whole_escrow_ends_the_order(start: str) -> None:
    market = new_market(stock=3)
    chain = market.chain
    order_id = market.order_in(start, quantity=2)
    before = chain.balance(BUYER)
    chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": 2 * PRICE})
    order = chain.order(order_id)
    assert (order.state, order.escrow, order.refunded, order.merchant_paid) == (
        "refunded",
        0,
        2 * PRICE,
        0,
    )
    assert order.deadline is None and order.ended_at == chain.time
    assert chain.balance(BUYER) == before + 2 * PRICE
    assert chain.listing(market.listing_id).stock == 3
    assert chain.shop_reputation(market.shop_id).orders_refunded == 1


def test_refund_above_the_escrow_is_invalid_field() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("delivered")
    assert_fails(refund(market, order_id, PRICE + 1), "invalid_field", "payload.amount")
    assert refund(market, order_id, 400_000).ok
    assert_fails(refund(market, order_id, PRICE), "invalid_field", "payload.amount")
    assert_fails(refund(market, order_id, 600_001), "invalid_field", "payload.amount")
    assert refund(market, order_id, 600_000).ok
    order = chain.order(order_id)
    assert (order.state, order.refunded) == ("refunded", PRICE)


def test_refund_precedence() -> None:
    market = new_market()
    placed, delivered = market.place(), market.order_in("delivered", buyer=BUYER_2)
    assert refund(market, b"\x04" * 32, 1, BUYER).code == "not_found"
    # authority beats state, state beats the amount
    assert_fails(refund(market, placed, PRICE * 5, BUYER), "forbidden", "sender")
    assert_fails(refund(market, placed, PRICE * 5), "invalid_state", "payload.order_id")
    assert_fails(refund(market, delivered, PRICE * 5, BUYER_2), "forbidden", "sender")
    assert_fails(
        market.chain.execute(MERCHANT, "order_refund", {"order_id": b"\x04" * 32, "amount": 0}),
        "invalid_field",
        "payload.amount",
    )


# ---------------------------------------------------------------------- R14: a partial refund is an offer


def offer(market: Market, amount: int = 300_000) -> bytes:
    order_id = market.order_in("return_requested")
    assert refund(market, order_id, amount).ok
    return order_id


def test_the_buyer_accepts_an_offer_by_confirming() -> None:
    market = new_market(points_bps=100)
    chain = market.chain
    order_id = offer(market)
    merchant_before = chain.balance(MERCHANT)
    chain.must(BUYER, "order_confirm", {"order_id": order_id})
    order = chain.order(order_id)
    assert (order.state, order.merchant_paid, order.refunded, order.escrow) == (
        "completed",
        700_000,
        300_000,
        0,
    )
    assert chain.balance(MERCHANT) == merchant_before + 700_000
    assert chain.points(market.shop_id, BUYER) == 700_000 * 100 // 10000


def test_an_offer_left_to_the_deadline_refunds_the_rest() -> None:
    market = new_market()
    chain = market.chain
    buyer_start = chain.balance(BUYER)
    order_id = offer(market)
    merchant_before = chain.balance(MERCHANT)
    deadline = chain.order(order_id).deadline
    assert deadline == chain.order(order_id).requested_at + chain.params.response_window_ms
    chain.advance_to(deadline)
    order = chain.order(order_id)
    assert (order.state, order.refunded, order.merchant_paid) == ("refunded", PRICE, 0)
    assert chain.balance(MERCHANT) == merchant_before
    assert (
        chain.balance(BUYER) == buyer_start - 2 * 10
    )  # all of the price is back; fees of place, return
    assert chain.points(market.shop_id, BUYER) == 0


def test_an_offer_escalated_to_a_dispute() -> None:
    market = new_market()
    chain = market.chain
    order_id = offer(market)
    assert dispute(market, order_id).ok
    assert chain.order(order_id).escrow == 700_000
    fee = 700_000 * 200 // 10000
    assert_fails(
        resolve(market, order_id, 700_000 - fee + 1), "invalid_field", "payload.buyer_amount"
    )
    balances = {who: chain.balance(who) for who in (BUYER, MERCHANT, ARBITER)}
    assert resolve(market, order_id, 100_000).ok
    assert chain.balance(ARBITER) == balances[ARBITER] + fee - 10
    assert chain.balance(BUYER) == balances[BUYER] + 100_000
    assert chain.balance(MERCHANT) == balances[MERCHANT] + 700_000 - fee - 100_000
    order = chain.order(order_id)
    assert (order.state, order.refunded, order.merchant_paid) == (
        "resolved",
        400_000,
        700_000 - fee - 100_000,
    )


# ---------------------------------------------------------------------- disputes


@pytest.mark.parametrize("start", ["shipped", "delivered", "return_requested"])
def test_the_buyer_opens_a_dispute(start: str) -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in(start)
    assert_fails(dispute(market, order_id, OUTSIDER), "forbidden", "sender")
    assert_fails(dispute(market, order_id, ARBITER), "forbidden", "sender")
    assert dispute(market, order_id).ok
    order = chain.order(order_id)
    assert order.state == "disputed" and order.opened_at == chain.time
    assert order.deadline == chain.time + chain.params.arbitration_window_ms
    assert order.history[-1]["opened_by"] == BUYER.address


def test_the_merchant_opens_a_dispute_only_from_return_requested() -> None:
    market = new_market()
    for start in ("shipped", "delivered"):
        assert_fails(
            dispute(market, market.order_in(start), MERCHANT), "invalid_state", "payload.order_id"
        )
    order_id = market.order_in("return_requested")
    assert dispute(market, order_id, MERCHANT).ok
    assert market.chain.order(order_id).history[-1]["opened_by"] == MERCHANT.address


@pytest.mark.parametrize("start", ["shipped", "delivered", "return_requested"])
def test_no_disputes_without_an_arbiter(start: str) -> None:
    market = new_market(with_arbiter=False)
    order_id = market.order_in(start)
    assert_fails(dispute(market, order_id), "invalid_state", "payload.order_id")
    assert_fails(resolve(market, order_id, 0), "forbidden", "sender")


def test_returns_are_unconditional_without_an_arbiter() -> None:
    """Seed 003 (无条件退换货): a return the merchant does not settle is refunded by deadline."""
    market = new_market(with_arbiter=False)
    chain = market.chain
    order_id = market.order_in("return_requested")
    before = chain.balance(BUYER)
    chain.advance_to(chain.order(order_id).deadline)  # type: ignore[arg-type]
    assert chain.order(order_id).state == "refunded"
    assert chain.balance(BUYER) == before + PRICE


@pytest.mark.parametrize(
    ("price", "fee_bps"),
    [
        (1_234_567, 200),
        (999, 200),
        (49, 200),
        (1, 200),
        (1_000_000, 10000),
        (1_000_003, 0),
        (777_777, 1),
    ],
)
def test_dispute_resolve_fee_and_buyer_amount_bound(price: int, fee_bps: int) -> None:
    market = new_market(Chain(Params(arbiter_fee_bps=fee_bps)), price=price)
    chain = market.chain
    order_id = market.order_in("disputed")
    fee = price * fee_bps // 10000
    assert_fails(
        resolve(market, order_id, price - fee + 1), "invalid_field", "payload.buyer_amount"
    )
    balances = {who: chain.balance(who) for who in (BUYER, MERCHANT, ARBITER)}
    buyer_amount = (price - fee) // 3
    assert resolve(market, order_id, buyer_amount).ok
    assert chain.balance(ARBITER) == balances[ARBITER] - 10 + fee
    assert chain.balance(BUYER) == balances[BUYER] + buyer_amount
    assert chain.balance(MERCHANT) == balances[MERCHANT] + price - fee - buyer_amount
    assert chain.order(order_id).merchant_paid == price - fee - buyer_amount
    assert chain.total_money() == chain.genesis.total_supply()


def test_the_buyer_may_get_everything_but_the_fee() -> None:
    market = new_market(price=1_234_567)
    order_id = market.order_in("disputed")
    fee = 1_234_567 * 200 // 10000
    assert fee == 24_691
    assert resolve(market, order_id, 1_234_567 - fee).ok
    order = market.chain.order(order_id)
    assert (order.state, order.refunded, order.merchant_paid) == ("resolved", 1_234_567 - fee, 0)


def test_only_the_orders_arbiter_resolves() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("disputed")
    for sender in (ARBITER_2, MERCHANT, BUYER, OUTSIDER):
        assert_fails(resolve(market, order_id, 0, sender), "forbidden", "sender")
    assert resolve(market, order_id, 0).ok
    assert chain.order(order_id).history[-1]["ruling"] == "split"


def test_dispute_resolve_precedence() -> None:
    market = new_market()
    delivered = market.order_in("delivered")
    assert resolve(market, b"\x06" * 32, 0, OUTSIDER).code == "not_found"
    # authority beats state; state beats the buyer_amount bound
    assert_fails(resolve(market, delivered, PRICE * 9, ARBITER_2), "forbidden", "sender")
    assert_fails(resolve(market, delivered, PRICE * 9), "invalid_state", "payload.order_id")
    receipt = market.chain.execute(
        ARBITER,
        "dispute_resolve",
        {"order_id": b"\x06" * 32, "buyer_amount": 0, "ruling": "r" * 513},
    )
    assert_fails(receipt, "invalid_field", "payload.ruling")


def test_dispute_open_precedence() -> None:
    market = new_market()
    placed = market.place()
    assert dispute(market, b"\x06" * 32, OUTSIDER).code == "not_found"
    assert_fails(dispute(market, placed, OUTSIDER), "forbidden", "sender")
    assert_fails(dispute(market, placed), "invalid_state", "payload.order_id")
