"""Reviews (R19), reputation (R20) and loyalty points (R21)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.reputation import Reputation, trust_score
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    BUYER,
    BUYER_2,
    BUYER_3,
    MERCHANT,
    MERCHANT_2,
    OUTSIDER,
    Chain,
    Market,
    assert_fails,
    list_goods,
    new_market,
)

PRICE = 1_000_000


def review(
    chain: Chain,
    order_id: bytes,
    rating: int = 5,
    sender: KeyPair = BUYER,
    time: int | None = None,
    **extra: Any,
) -> Receipt:
    return chain.send(
        sender, "review_submit", {"order_id": order_id, "rating": rating, **extra}, time=time
    )


def reply(chain: Chain, order_id: bytes, sender: KeyPair = MERCHANT) -> Receipt:
    return chain.send(sender, "review_reply", {"order_id": order_id, "text": "thank you"})


# ---------------------------------------------------------------------- reviews (R19)


def test_only_the_buyer_reviews_once() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("completed")
    for sender in (MERCHANT, OUTSIDER, BUYER_2):
        assert_fails(review(chain, order_id, sender=sender), "forbidden", "sender")
    assert review(chain, order_id, 4, text="fragrant").ok
    assert chain.order(order_id).review == {
        "rating": 4,
        "text": "fragrant",
        "time": chain.time,
        "height": chain.height,
        "tx": chain.last_tx_hash,
    }
    assert_fails(review(chain, order_id, 1), "already_reviewed", "payload.order_id")
    assert chain.order(order_id).review["rating"] == 4  # type: ignore[index]


@pytest.mark.parametrize("ending", ["completed", "refunded", "resolved"])
def test_the_review_window_closes_at_ended_at_plus_review_window(ending: str) -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in(ending)
    closes = chain.order(order_id).ended_at + chain.params.review_window_ms  # type: ignore[operator]
    late = chain.fork()
    assert_fails(review(late, order_id, 3, time=closes), "deadline_passed", "payload.order_id")
    assert review(chain, order_id, 3, time=closes - 1).ok


def test_review_precedence() -> None:
    market = new_market()
    chain = market.chain
    placed = market.place()
    completed, reviewed = market.order_in("completed", buyer=BUYER_2), market.order_in("completed")
    assert review(chain, reviewed).ok
    assert review(chain, b"\x0b" * 32, sender=OUTSIDER).code == "not_found"
    assert_fails(
        review(chain, placed, sender=OUTSIDER), "forbidden", "sender"
    )  # authority beats state
    chain.advance(
        2 * chain.params.review_window_ms
    )  # `placed` expired long ago; both windows closed
    assert_fails(
        review(chain, placed), "invalid_state", "payload.order_id"
    )  # state beats the window
    assert_fails(
        review(chain, completed, sender=BUYER), "forbidden", "sender"
    )  # authority beats the window
    assert_fails(review(chain, completed, sender=BUYER_2), "deadline_passed", "payload.order_id")
    assert_fails(
        review(chain, reviewed), "deadline_passed", "payload.order_id"
    )  # the window beats already_*
    receipt = chain.execute(BUYER, "review_submit", {"order_id": b"\x0b" * 32, "rating": 6})
    assert_fails(receipt, "invalid_field", "payload.rating")  # schema beats existence
    assert chain.admit(BUYER, "review_submit", {"order_id": placed, "rating": 0}) == "invalid_field"


def test_an_expired_order_cannot_be_reviewed() -> None:
    market = new_market()
    order_id = market.order_in("expired")
    assert_fails(review(market.chain, order_id), "invalid_state", "payload.order_id")


def test_the_merchant_replies_once() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("completed")
    assert_fails(reply(chain, order_id), "not_found", "payload.order_id")  # nothing to reply to yet
    assert review(chain, order_id, 2).ok
    assert_fails(reply(chain, order_id, BUYER), "forbidden", "sender")
    assert_fails(reply(chain, order_id, MERCHANT_2), "forbidden", "sender")
    assert reply(chain, order_id).ok
    assert chain.order(order_id).review["reply"] == {  # type: ignore[index]
        "text": "thank you",
        "time": chain.time,
        "height": chain.height,
        "tx": chain.last_tx_hash,
    }
    assert_fails(reply(chain, order_id), "already_exists", "payload.order_id")
    assert reply(chain, b"\x0c" * 32, OUTSIDER).code == "not_found"


# ---------------------------------------------------------------------- reputation (R20)


def resolve(market: Market, order_id: bytes, buyer_amount: int) -> None:
    market.chain.must(
        ARBITER,
        "dispute_resolve",
        {"order_id": order_id, "buyer_amount": buyer_amount, "ruling": "r"},
    )


def test_reputation_counts_every_outcome_for_the_shop_and_the_merchant() -> None:
    market = new_market(stock=50)
    chain = market.chain
    fee = PRICE * 200 // 10000
    completed = [market.order_in("completed"), market.order_in("completed", buyer=BUYER_2)]
    refunded = market.order_in("refunded", buyer=BUYER_3)
    market.order_in("expired")
    market.order_in("cancelled")
    market.order_in("rejected")
    won, lost = market.order_in("disputed"), market.order_in("disputed", buyer=BUYER_2)
    resolve(market, won, PRICE // 2)  # 2 × buyer_amount = escrow: not lost
    resolve(market, lost, PRICE // 2 + 1)
    timed_out = market.order_in("disputed", buyer=BUYER_3)
    chain.advance_to(chain.order(timed_out).deadline)  # type: ignore[arg-type]
    for order_id, rating in zip((*completed, refunded), (5, 4, 4), strict=True):
        order = chain.order(order_id)
        sender = {BUYER.address: BUYER, BUYER_2.address: BUYER_2, BUYER_3.address: BUYER_3}[
            order.buyer
        ]
        assert review(chain, order_id, rating, sender=sender).ok
    expected = Reputation(
        rating_count=3,
        rating_sum=13,
        avg_rating_x100=1300 // 3,
        orders_placed=9,
        orders_completed=2,
        orders_refunded=2,
        orders_expired=1,
        disputes_won=1,
        disputes_lost=1,
        units_sold=2,
        revenue=2 * PRICE + (PRICE - fee - PRICE // 2) + (PRICE - fee - PRICE // 2 - 1),
    )
    expected = Reputation(**{**expected.__dict__, "trust_score": trust_score(expected)})
    assert chain.shop_reputation(market.shop_id) == expected
    assert chain.merchant_reputation(MERCHANT) == expected
    assert expected.avg_rating_x100 == 433

    # a second shop of the same merchant adds to the merchant, not to the first shop
    other = Market(chain, market.shop_id, list_goods(chain, market.shop_id), MERCHANT, ARBITER)
    second = new_market(chain, with_arbiter=False)
    order_id = second.order_in("completed")
    assert review(chain, order_id, 1).ok
    merchant = chain.merchant_reputation(MERCHANT)
    assert (
        merchant.rating_count,
        merchant.rating_sum,
        merchant.orders_completed,
        merchant.orders_placed,
    ) == (
        4,
        14,
        3,
        10,
    )
    assert chain.shop_reputation(second.shop_id).rating_count == 1
    assert chain.shop_reputation(market.shop_id) == expected
    assert other.listing_id != market.listing_id


@pytest.mark.parametrize(
    ("buyer_amount", "outcome"),
    [
        (0, "won"),
        (490_001, "won"),  # more than half of escrow − fee, but not of the escrow before the fee
        (500_000, "won"),  # exactly half
        (500_001, "lost"),
        (980_000, "lost"),  # all but the fee
    ],
)
def test_a_dispute_is_lost_iff_twice_the_buyer_amount_exceeds_the_escrow(
    buyer_amount: int, outcome: str
) -> None:
    market = new_market()
    order_id = market.order_in("disputed")
    resolve(market, order_id, buyer_amount)
    reputation = market.chain.shop_reputation(market.shop_id)
    assert (reputation.disputes_won, reputation.disputes_lost) == (
        (1, 0) if outcome == "won" else (0, 1)
    )


def test_the_escrow_of_a_dispute_is_what_remains_after_partial_refunds() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("return_requested")
    chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": 400_000})
    market.step(order_id, "dispute")
    resolve(market, order_id, 300_001)  # 600_002 > 600_000
    assert chain.shop_reputation(market.shop_id).disputes_lost == 1


def test_a_dispute_ended_by_deadline_is_neither_won_nor_lost() -> None:
    market = new_market()
    chain = market.chain
    order_id = market.order_in("disputed")
    chain.advance_to(chain.order(order_id).deadline)  # type: ignore[arg-type]
    reputation = chain.shop_reputation(market.shop_id)
    assert (reputation.disputes_won, reputation.disputes_lost, reputation.orders_refunded) == (
        0,
        0,
        1,
    )


def test_a_shop_without_history_has_the_score_of_its_priors() -> None:
    market = new_market()
    reputation = market.chain.shop_reputation(market.shop_id)
    assert (reputation.rating_count, reputation.avg_rating_x100, reputation.trust_score) == (
        0,
        0,
        610,
    )


counters = st.integers(min_value=0, max_value=2**64 - 1)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(counters, counters, counters, counters, counters, counters, counters)
def test_trust_score_stays_within_0_and_1000(
    count: int, completed: int, refunded: int, expired: int, won: int, lost: int, rating_base: int
) -> None:
    rating_sum = min(count * 5, max(count, rating_base))  # between 1 and 5 per rating
    score = trust_score(
        Reputation(
            rating_count=count,
            rating_sum=rating_sum,
            orders_completed=completed,
            orders_refunded=refunded,
            orders_expired=expired,
            disputes_won=won,
            disputes_lost=lost,
        )
    )
    assert 0 <= score <= 1000


# ---------------------------------------------------------------------- loyalty points (R21)


def points_market(points_bps: int = 1000, max_redeem_bps: int = 5000, price: int = PRICE) -> Market:
    """A shop paying 10% in points where BUYER already holds 100_000 points."""
    market = new_market(stock=50, points_bps=points_bps, max_redeem_bps=max_redeem_bps, price=price)
    market.order_in("completed")
    return market


def test_completion_earns_points_on_the_merchants_payout() -> None:
    market = new_market(stock=10, points_bps=333, price=999_999)
    chain = market.chain
    market.order_in("completed", quantity=3)
    assert chain.points(market.shop_id, BUYER) == 3 * 999_999 * 333 // 10000
    assert chain.points(market.shop_id, BUYER_2) == 0


@pytest.mark.parametrize("ending", ["cancelled", "rejected", "expired", "refunded", "resolved"])
def test_only_completion_earns_points(ending: str) -> None:
    market = new_market(points_bps=1000)
    market.order_in(ending)  # `resolved` pays the merchant (buyer_amount 0) but is not `completed`
    assert market.chain.points(market.shop_id, BUYER) == 0


def test_points_bps_is_read_at_order_place() -> None:
    market = new_market(points_bps=1000)
    chain = market.chain
    order_id = market.order_in("delivered")
    chain.must(MERCHANT, "shop_update", {"shop_id": market.shop_id, "points_bps": 0})
    assert chain.order(order_id).points_bps == 1000
    market.step(order_id, "confirm")
    assert chain.points(market.shop_id, BUYER) == PRICE * 1000 // 10000
    market.order_in("completed", buyer=BUYER_2)
    assert chain.points(market.shop_id, BUYER_2) == 0


def test_redeeming_points_lowers_the_escrow() -> None:
    market = points_market()
    chain = market.chain
    assert chain.points(market.shop_id, BUYER) == 100_000
    before = chain.balance(BUYER)
    order_id = market.place(BUYER, 1, redeem_points=60_000)
    order = chain.order(order_id)
    assert (order.escrow, order.total_price, order.redeem_points) == (PRICE - 60_000, PRICE, 60_000)
    assert chain.balance(BUYER) == before - (PRICE - 60_000) - 10
    assert chain.points(market.shop_id, BUYER) == 40_000


def test_the_redeem_cap_is_price_times_quantity_times_max_redeem_bps() -> None:
    market = new_market(stock=50, points_bps=10000, max_redeem_bps=3333, price=999)
    chain = market.chain
    market.order_in("completed", quantity=2)  # earns 1998 points
    cap = 999 * 3333 // 10000
    assert cap == 332
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload(1, redeem_points=cap + 1)),
        "invalid_field",
        "payload.redeem_points",
    )
    assert chain.order(market.place(BUYER, 1, redeem_points=cap)).escrow == 999 - cap
    assert (
        chain.order(market.place(BUYER, 3, redeem_points=3 * 999 * 3333 // 10000)).escrow
        == 3 * 999 - 998
    )


def test_redeeming_more_than_held_is_insufficient_funds() -> None:
    market = points_market()
    chain = market.chain
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload(1, redeem_points=100_001)),
        "insufficient_funds",
        "payload.redeem_points",
    )
    assert_fails(
        chain.send(BUYER_2, "order_place", market.place_payload(1, redeem_points=1)),
        "insufficient_funds",
        "payload.redeem_points",
    )
    assert chain.points(market.shop_id, BUYER) == 100_000


def test_points_belong_to_one_shop() -> None:
    market = points_market()
    other = new_market(market.chain, MERCHANT_2, with_arbiter=False)
    assert_fails(
        market.chain.send(BUYER, "order_place", other.place_payload(1, redeem_points=1)),
        "insufficient_funds",
        "payload.redeem_points",
    )


ENDINGS_WITHOUT_PAYOUT = [
    "cancelled",
    "rejected",
    "expired",
    "refunded",
    "resolved_all_to_buyer",
    "offer_left_to_deadline",
]
ENDINGS_WITH_PAYOUT = ["completed", "resolved_split", "offer_confirmed"]


def end_order(market: Market, ending: str, redeem: int) -> bytes:
    chain = market.chain
    if ending.startswith("resolved"):
        order_id = market.order_in("disputed", redeem_points=redeem)
        escrow = chain.order(order_id).escrow
        fee = escrow * chain.params.arbiter_fee_bps // 10000
        resolve(market, order_id, escrow - fee if ending == "resolved_all_to_buyer" else 1)
    elif ending.startswith("offer"):
        order_id = market.order_in("return_requested", redeem_points=redeem)
        chain.must(MERCHANT, "order_refund", {"order_id": order_id, "amount": 1000})
        if ending == "offer_confirmed":
            chain.must(BUYER, "order_confirm", {"order_id": order_id})
        else:
            chain.advance_to(chain.order(order_id).deadline)  # type: ignore[arg-type]
    else:
        order_id = market.order_in(ending, redeem_points=redeem)
    assert chain.order(order_id).state in (
        "completed",
        "resolved",
        "cancelled",
        "rejected",
        "expired",
        "refunded",
    )
    return order_id


@pytest.mark.parametrize("ending", ENDINGS_WITHOUT_PAYOUT + ENDINGS_WITH_PAYOUT)
def test_redeemed_points_come_back_iff_the_merchant_receives_nothing(ending: str) -> None:
    market = points_market(points_bps=0 + 1000)
    chain = market.chain
    order_id = end_order(market, ending, 30_000)
    order = chain.order(order_id)
    earned = order.merchant_paid * 1000 // 10000 if order.state == "completed" else 0
    if ending in ENDINGS_WITHOUT_PAYOUT:
        assert order.merchant_paid == 0
        assert chain.points(market.shop_id, BUYER) == 100_000
    else:
        assert order.merchant_paid > 0
        assert chain.points(market.shop_id, BUYER) == 100_000 - 30_000 + earned


def test_a_completed_order_paid_wholly_in_points_keeps_them_spent() -> None:
    """R21 "the merchant ends up receiving nothing" read as a sale that did not go through
    (docs/marketplace.md): with max_redeem_bps = 10000 the escrow can be 0, and the points
    of such a completed order stay spent, or buyers would get free goods forever."""
    market = new_market(stock=10, points_bps=10000, max_redeem_bps=10000, price=1000)
    chain = market.chain
    market.order_in("completed")  # 1000 points
    order_id = market.order_in("completed", redeem_points=1000)
    assert (chain.order(order_id).escrow, chain.order(order_id).merchant_paid) == (0, 0)
    assert chain.points(market.shop_id, BUYER) == 0
    market.order_in("completed")  # 1000 points again
    market.order_in("cancelled", redeem_points=1000)  # not a sale: they come back
    assert chain.points(market.shop_id, BUYER) == 1000
