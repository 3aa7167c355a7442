"""Verified-purchase reviews and merchant replies (PROTOCOL R19, R20)."""

from __future__ import annotations

from typing import Any

from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.context import Origin, TxContext
from marketplace_tx.rules.order_records import require_order, require_state, store_order
from marketplace_tx.rules.reputation import record_outcome
from marketplace_tx.rules.state import State
from marketplace_tx.speedups import evolve

REVIEWABLE_STATES = ("completed", "refunded", "resolved")
"""States whose buyer may review the order (R19)."""


def apply_review_submit(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The buyer rates a completed, refunded or resolved order, once, within review_window_ms."""
    order_id, rating = payload["order_id"], payload["rating"]
    order = require_order(state, order_id)
    if context.sender != order.buyer:
        raise RuleError("forbidden", "sender: only the order's buyer may review it")
    require_state(order, REVIEWABLE_STATES, "review")
    assert order.ended_at is not None
    if context.block.time >= order.ended_at + context.block.params.review_window_ms:
        raise RuleError("deadline_passed", "payload.order_id: the review window has closed")
    if order.review is not None:
        raise RuleError("already_reviewed", "payload.order_id: the order is already reviewed")
    origin = Origin.of_tx(context)
    review: dict[str, Any] = {"rating": rating, "time": origin.time, "height": origin.height, "tx": context.tx_hash}
    if "text" in payload:
        review["text"] = payload["text"]
    store_order(state, order_id, evolve(order, review=review), order)
    record_outcome(state, order.shop_id, order.merchant, rating_count=1, rating_sum=rating)
    return [{"type": "review", "order_id": order_id, "shop_id": order.shop_id, "rating": rating}]


def apply_review_reply(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The merchant answers a review, once."""
    order_id = payload["order_id"]
    order = require_order(state, order_id)
    if order.review is None:
        raise RuleError("not_found", "payload.order_id: the order has no review to reply to")
    if context.sender != order.merchant:
        raise RuleError("forbidden", "sender: only the order's merchant may reply")
    if "reply" in order.review:
        raise RuleError("already_exists", "payload.order_id: the review already has a reply")
    reply = {"text": payload["text"], "time": context.block.time, "height": context.block.height, "tx": context.tx_hash}
    store_order(state, order_id, evolve(order, review={**order.review, "reply": reply}), order)
    return [{"type": "review_reply", "order_id": order_id, "shop_id": order.shop_id}]
