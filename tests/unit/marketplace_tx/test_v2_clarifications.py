"""PROTOCOL v2 clarifications of R11 and R21, asserted on the state after the block.

- R11 (v2): a stored value above 2^64−1 is `invalid_field`, except stock returned when
  an order ends in any terminal state other than `completed`, by transaction or by
  deadline: it saturates at 2^64−1, so no merchant action can block a buyer's refund
  (`marketplace_tx.rules.listings.return_stock`).
- R21 (v2): redeemed points come back iff the order ends in a state other than
  `completed` and the merchant received nothing; a completed order keeps its redeemed
  points spent, even when they paid for all of it
  (`marketplace_tx.rules.settlement.finish_order`).

docs/marketplace.md ("Choices") and docs/rules.md (R11, R21) say the same.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from marketplace_tx.primitives import codec
from marketplace_tx.rules.state_keys import listing_key, points_key
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    BUYER,
    MERCHANT,
    UINT64_MAX,
    Market,
    assert_fails,
    new_market,
)

INT64_MAX = 2**63 - 1
"""The largest `stock_delta` (a signed integer, R1)."""


def fill_stock(market: Market) -> None:
    """The merchant raises the listing's stock to exactly 2^64−1 (two `listing_update`s:
    `stock_delta` is signed)."""
    chain = market.chain
    while (missing := UINT64_MAX - chain.listing(market.listing_id).stock) > 0:
        update = {"listing_id": market.listing_id, "stock_delta": min(missing, INT64_MAX)}
        assert chain.send(MERCHANT, "listing_update", update).ok
    assert chain.listing(market.listing_id).stock == UINT64_MAX


def _by_tx(sender: str, tx_type: str, **payload: object) -> Callable[[Market, bytes], None]:
    def end(market: Market, order_id: bytes) -> None:
        order = market.chain.order(order_id)
        who = {"buyer": BUYER, "merchant": MERCHANT, "arbiter": ARBITER}[sender]
        full = {"order_id": order_id, **payload}
        if tx_type == "order_refund":
            full["amount"] = order.escrow
        market.chain.must(who, tx_type, full)

    return end


def _by_deadline(market: Market, order_id: bytes) -> None:
    deadline = market.chain.order(order_id).deadline
    assert deadline is not None
    market.chain.advance_to(deadline)


NON_COMPLETED_ENDINGS: dict[str, tuple[str, Callable[[Market, bytes], None], str, str]] = {
    "cancel from placed": ("placed", _by_tx("buyer", "order_cancel"), "cancelled", "tx"),
    "reject from placed": ("placed", _by_tx("merchant", "order_reject", reason="no"), "rejected", "tx"),
    "reject from accepted": ("accepted", _by_tx("merchant", "order_reject", reason="no"), "rejected", "tx"),
    "deadline from placed": ("placed", _by_deadline, "expired", "deadline"),
    "deadline from accepted": ("accepted", _by_deadline, "expired", "deadline"),
    "full refund from accepted": ("accepted", _by_tx("merchant", "order_refund"), "refunded", "tx"),
    "full refund from shipped": ("shipped", _by_tx("merchant", "order_refund"), "refunded", "tx"),
    "full refund from delivered": ("delivered", _by_tx("merchant", "order_refund"), "refunded", "tx"),
    "full refund from return_requested": ("return_requested", _by_tx("merchant", "order_refund"), "refunded", "tx"),
    "full refund from disputed": ("disputed", _by_tx("merchant", "order_refund"), "refunded", "tx"),
    "deadline from return_requested": ("return_requested", _by_deadline, "refunded", "deadline"),
    "deadline from disputed": ("disputed", _by_deadline, "refunded", "deadline"),
    "dispute_resolve": (
        "disputed", _by_tx("arbiter", "dispute_resolve", buyer_amount=0, ruling="merchant wins"), "resolved", "tx",
    ),
}  # fmt: skip
"""Every way into a terminal state other than `completed` (§5, R15): the state the order
is driven to first, what ends it, the terminal state, and whether a tx or a deadline did."""


# ---------------------------------------------------------------------- R11 (v2)


@pytest.mark.parametrize("ending", sorted(NON_COMPLETED_ENDINGS))
def test_r11_v2_returned_stock_saturates_at_uint64_max(ending: str) -> None:
    """R11 (v2): the merchant filled the stock to 2^64−1 while the order was open; the
    order still ends (the block is valid, the tx succeeds), the buyer is refunded, and the
    listing's stock after the block is exactly 2^64−1."""
    start, end, terminal, by = NON_COMPLETED_ENDINGS[ending]
    market = new_market(stock=10)
    chain = market.chain
    order_id = market.order_in(start, quantity=3)
    fill_stock(market)
    order = chain.order(order_id)
    buyer_before = chain.balance(BUYER)
    end(market, order_id)
    ended = chain.order(order_id)
    assert (ended.state, ended.escrow) == (terminal, 0)
    assert (ended.history[-1]["tx"] == "deadline") == (by == "deadline")
    assert chain.listing(market.listing_id).stock == UINT64_MAX
    assert chain.listing(market.listing_id).sold == 0
    paid_to_buyer = chain.balance(BUYER) - buyer_before
    if terminal == "resolved":  # buyer_amount 0: the merchant gets the rest
        assert paid_to_buyer == 0 and ended.merchant_paid > 0
    elif terminal == "cancelled":  # the buyer's own tx paid its fee
        assert paid_to_buyer == order.escrow - chain.params.min_fee
    else:
        assert paid_to_buyer == order.escrow


def test_r11_v2_saturation_is_per_return_not_only_at_the_maximum() -> None:
    """R11 (v2): stock 2^64−2 plus 3 returned units is 2^64−1, not an error and not a wrap."""
    market = new_market(stock=10)
    chain = market.chain
    order_id = market.order_in("placed", quantity=3)
    fill_stock(market)
    assert chain.send(MERCHANT, "listing_update", {"listing_id": market.listing_id, "stock_delta": -1}).ok
    assert chain.listing(market.listing_id).stock == UINT64_MAX - 1
    chain.must(BUYER, "order_cancel", {"order_id": order_id})
    assert chain.listing(market.listing_id).stock == UINT64_MAX


def test_r11_v2_two_orders_ending_in_one_block_by_deadline_both_saturate() -> None:
    """R11 (v2): several returns in one block (deadlines fire in (deadline, order_id)
    order, R15) each saturate; the block is valid and both buyers are refunded."""
    market = new_market(stock=10)
    chain = market.chain
    first = market.place(BUYER, 2)
    second = market.place(BUYER, 4)
    fill_stock(market)
    deadline = max(chain.order(first).deadline or 0, chain.order(second).deadline or 0)
    chain.advance_to(deadline)
    assert (chain.order(first).state, chain.order(second).state) == ("expired", "expired")
    assert chain.listing(market.listing_id).stock == UINT64_MAX


def test_r11_v2_only_returned_stock_saturates() -> None:
    """R11 (v2): the merchant's own `stock_delta` past 2^64−1 is still `invalid_field`,
    and a completed order does not return stock (it counts as sold)."""
    market = new_market(stock=10)
    chain = market.chain
    order_id = market.order_in("delivered", quantity=3)
    fill_stock(market)
    assert_fails(
        chain.send(MERCHANT, "listing_update", {"listing_id": market.listing_id, "stock_delta": 1}),
        "invalid_field",
        "payload.stock_delta",
    )
    chain.must(BUYER, "order_confirm", {"order_id": order_id})
    listing = chain.listing(market.listing_id)
    assert (listing.stock, listing.sold) == (UINT64_MAX, 3)


# ---------------------------------------------------------------------- R21 (v2)

PRICE = 1_000
"""Unit price in µMKT; with points_bps 10000 a completed order earns exactly this."""


def points_market() -> Market:
    """A shop where points pay up to 100% and every µMKT paid earns one point; BUYER holds
    exactly `PRICE` points after one completed order."""
    market = new_market(stock=20, points_bps=10000, max_redeem_bps=10000, price=PRICE)
    market.order_in("completed")
    assert market.chain.points(market.shop_id, BUYER) == PRICE
    return market


def stored_points(market: Market) -> bytes | None:
    """The raw `p` entry of BUYER at the shop (R35: absent when the balance is 0)."""
    return market.chain.base.values.get(points_key(market.shop_id, BUYER.address))


COMPLETIONS: dict[str, tuple[str, Callable[[Market, bytes], None], str]] = {
    "confirm from shipped": ("shipped", _by_tx("buyer", "order_confirm"), "tx"),
    "confirm from delivered": ("delivered", _by_tx("buyer", "order_confirm"), "tx"),
    "confirm from return_requested": ("return_requested", _by_tx("buyer", "order_confirm"), "tx"),
    "deadline from shipped": ("shipped", _by_deadline, "deadline"),
    "deadline from delivered": ("delivered", _by_deadline, "deadline"),
}
"""Every way into `completed` (§5, R15)."""


@pytest.mark.parametrize("completion", sorted(COMPLETIONS))
def test_r21_v2_a_completed_order_paid_wholly_in_points_keeps_them_spent(completion: str) -> None:
    """R21 (v2): escrow 0, the merchant receives nothing, and yet the points stay spent;
    nothing is earned (0 paid × points_bps); the `p` entry is gone after the block."""
    start, end, _ = COMPLETIONS[completion]
    market = points_market()
    chain = market.chain
    order_id = market.order_in(start, redeem_points=PRICE)
    assert chain.order(order_id).escrow == 0
    assert stored_points(market) is None
    end(market, order_id)
    order = chain.order(order_id)
    assert (order.state, order.escrow, order.merchant_paid, order.redeem_points) == ("completed", 0, 0, PRICE)
    assert chain.points(market.shop_id, BUYER) == 0
    assert stored_points(market) is None


@pytest.mark.parametrize("completion", sorted(COMPLETIONS))
def test_r21_v2_a_completed_order_paid_partly_in_points_keeps_them_spent(completion: str) -> None:
    """R21 (v2): the redeemed part stays spent; points are earned on the µMKT paid only."""
    start, end, _ = COMPLETIONS[completion]
    market = points_market()
    chain = market.chain
    order_id = market.order_in(start, quantity=2, redeem_points=PRICE // 2)
    end(market, order_id)
    order = chain.order(order_id)
    paid = 2 * PRICE - PRICE // 2
    assert (order.state, order.merchant_paid) == ("completed", paid)
    assert chain.points(market.shop_id, BUYER) == PRICE - PRICE // 2 + paid * 10000 // 10000


@pytest.mark.parametrize("ending", sorted(NON_COMPLETED_ENDINGS))
def test_r21_v2_points_come_back_iff_not_completed_and_the_merchant_got_nothing(ending: str) -> None:
    """R21: every other terminal state gives the redeemed points back exactly when the
    merchant received nothing (a resolution paying the merchant keeps them spent)."""
    start, end, terminal, _ = NON_COMPLETED_ENDINGS[ending]
    market = points_market()
    chain = market.chain
    order_id = market.order_in(start, quantity=2, redeem_points=PRICE // 2)
    assert chain.points(market.shop_id, BUYER) == PRICE - PRICE // 2
    end(market, order_id)
    order = chain.order(order_id)
    assert order.state == terminal
    if order.merchant_paid:
        assert terminal == "resolved"
        assert chain.points(market.shop_id, BUYER) == PRICE - PRICE // 2
    else:
        assert chain.points(market.shop_id, BUYER) == PRICE


def test_r21_v2_a_resolution_giving_the_merchant_nothing_returns_the_points() -> None:
    """R21: `resolved` with everything after the arbiter's fee to the buyer: the merchant
    received nothing, so the redeemed points come back."""
    market = points_market()
    chain = market.chain
    order_id = market.order_in("disputed", quantity=2, redeem_points=PRICE // 2)
    escrow = chain.order(order_id).escrow
    fee = escrow * chain.params.arbiter_fee_bps // 10000
    chain.must(ARBITER, "dispute_resolve", {"order_id": order_id, "buyer_amount": escrow - fee, "ruling": "buyer"})
    order = chain.order(order_id)
    assert (order.state, order.merchant_paid) == ("resolved", 0)
    assert chain.points(market.shop_id, BUYER) == PRICE


def test_r11_v2_a_completion_never_fails_on_the_listings_sold_counter() -> None:
    """R11 (v2) spirit, for the implementation's own `sold` stat (docs/state.md): like the
    R20 counters it saturates at 2^64−1, so completing an order, by the buyer or by
    deadline, can neither fail nor break the block (before, the record could not be
    encoded and building the block raised). The counter is set near its maximum
    directly: reaching it by orders takes 2^64 units paid for."""
    market = new_market(stock=10)
    chain = market.chain
    by_tx = market.order_in("delivered", quantity=3)
    by_deadline = market.order_in("delivered", quantity=2)
    key = listing_key(market.listing_id)
    stored = codec.decode(chain.base.values[key])
    chain.base.apply({key: codec.encode({**stored, "sold": UINT64_MAX - 1})})
    chain.must(BUYER, "order_confirm", {"order_id": by_tx})
    assert chain.listing(market.listing_id).sold == UINT64_MAX
    chain.advance_to(chain.order(by_deadline).deadline)  # type: ignore[arg-type]
    assert chain.order(by_deadline).state == "completed"
    assert chain.listing(market.listing_id).sold == UINT64_MAX
