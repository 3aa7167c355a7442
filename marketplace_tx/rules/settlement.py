"""How an order ends: escrow payouts, stock, items, points and reputation (PROTOCOL R14, R17, R20–R22).

Every way into a terminal state goes through `finish_order`, so a state has the same
effects whether a transaction or a deadline led there (R14).
"""

from __future__ import annotations

from marketplace_tx.chain.params import Params
from marketplace_tx.rules.accounts import credit
from marketplace_tx.rules.context import Origin
from marketplace_tx.rules.items import sell_item
from marketplace_tx.rules.listings import record_sale, return_stock
from marketplace_tx.rules.order_records import Order, enter_state, store_order, with_history
from marketplace_tx.rules.points import add_points
from marketplace_tx.rules.reputation import record_outcome
from marketplace_tx.rules.state import State
from marketplace_tx.speedups import evolve


def finish_order(
    state: State,
    order_id: bytes,
    order: Order,
    new_state: str,
    origin: Origin,
    params: Params,
    event: str,
    buyer_amount: int = 0,
    **details: object,
) -> Order:
    """Move `order` into a terminal state and settle it; returns the stored order.

    completed: the whole escrow → merchant, points earned, items → buyer.
    cancelled, rejected, expired, refunded: the whole escrow → buyer.
    resolved: arbiter fee → arbiter, `buyer_amount` → buyer, the rest → merchant.
    Every state but completed returns stock and items, except after an `order_deliver`
    (R41: delivered content is not taken back); redeemed points come back
    iff the merchant received nothing from an order that did not complete (R21).
    """
    escrow = order.escrow
    merchant_share = buyer_share = arbiter_fee = 0
    if new_state == "completed":
        merchant_share = escrow
    elif new_state == "resolved":
        arbiter_fee = escrow * params.arbiter_fee_bps // 10000
        buyer_share = buyer_amount
        merchant_share = escrow - arbiter_fee - buyer_amount
    else:
        buyer_share = escrow
    if merchant_share:
        credit(state, order.merchant, merchant_share)
    if buyer_share:
        credit(state, order.buyer, buyer_share)
    if arbiter_fee:
        assert order.arbiter is not None
        credit(state, order.arbiter, arbiter_fee)
    if new_state == "completed":
        record_sale(state, order.listing_id, order.quantity, order.item_ids)
        for item_id in order.item_ids:
            sell_item(state, item_id, order.buyer, order_id, origin)
        add_points(state, order.shop_id, order.buyer, merchant_share * order.points_bps // 10000)
    elif order.delivery is None:
        return_stock(state, order.listing_id, order.quantity, order.item_ids)
    if merchant_share == 0 and order.redeem_points and new_state != "completed":
        # R21 "the merchant ends up receiving nothing": a sale that did not go through.
        # A completed order paid wholly in points did go through; returning its points
        # would make every such order free (docs/marketplace.md).
        add_points(state, order.shop_id, order.buyer, order.redeem_points)
    _record_reputation(state, order, new_state, buyer_amount, merchant_share)
    ended = enter_state(order, new_state, origin, params)
    ended = evolve(
        ended,
        escrow=0,
        merchant_paid=order.merchant_paid + merchant_share,
        refunded=order.refunded + buyer_share,
    )
    if new_state == "resolved":
        details = {**details, "buyer_amount": buyer_share, "arbiter_fee": arbiter_fee, "merchant_amount": merchant_share}
    ended = with_history(ended, event, origin, **details)
    store_order(state, order_id, ended, order)
    return ended


def _record_reputation(state: State, order: Order, new_state: str, buyer_amount: int, merchant_share: int) -> None:
    counters: dict[str, int] = {}
    if new_state == "completed":
        counters = {"orders_completed": 1, "units_sold": order.quantity}
    elif new_state == "refunded":
        counters = {"orders_refunded": 1}
    elif new_state == "expired":
        counters = {"orders_expired": 1}
    elif new_state == "resolved":
        lost = 2 * buyer_amount > order.escrow
        counters = {"disputes_lost" if lost else "disputes_won": 1}
    if merchant_share:
        counters["revenue"] = merchant_share
    if counters:
        record_outcome(state, order.shop_id, order.merchant, **counters)
