"""After-sales: returns, refunds and disputes (PROTOCOL §5, R14)."""

from __future__ import annotations

from typing import Any

from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.accounts import credit
from marketplace_tx.rules.context import Origin, TxContext
from marketplace_tx.rules.order_records import (
    enter_state,
    require_order,
    require_state,
    store_order,
    with_history,
)
from marketplace_tx.rules.orders import finish_by_tx, order_event
from marketplace_tx.rules.state import State
from marketplace_tx.speedups import evolve

REFUNDABLE_STATES = ("accepted", "shipped", "delivered", "return_requested", "disputed")


def apply_return_request(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """shipped, delivered → return_requested, by the buyer; never for a digital order (R41)."""
    order_id = payload["order_id"]
    order = require_order(state, order_id)
    if context.sender != order.buyer:
        raise RuleError("forbidden", "sender: only the order's buyer may request a return")
    require_state(order, ("shipped", "delivered"), "request a return of")
    if order.digital:
        raise RuleError("invalid_state", "payload.order_id: digital goods cannot be returned (R41)")
    origin = Origin.of_tx(context)
    moved = with_history(
        enter_state(order, "return_requested", origin, context.block.params), "return_request", origin,
        reason=payload["reason"],
    )
    store_order(state, order_id, moved, order)
    return [order_event(order_id, order, moved, "return_request")]


def apply_order_refund(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The merchant refunds part (state unchanged) or all (→ refunded) of the escrow."""
    order_id, amount = payload["order_id"], payload["amount"]
    order = require_order(state, order_id)
    if context.sender != order.merchant:
        raise RuleError("forbidden", "sender: only the order's merchant may refund it")
    require_state(order, REFUNDABLE_STATES, "refund")
    if amount > order.escrow:
        raise RuleError("invalid_field", f"payload.amount: the escrow holds only {order.escrow}")
    if amount == order.escrow:
        return finish_by_tx(state, context, order_id, order, "refunded", "order_refund", amount=amount)
    credit(state, order.buyer, amount)
    origin = Origin.of_tx(context)
    updated = evolve(order, escrow=order.escrow - amount, refunded=order.refunded + amount)
    updated = with_history(updated, "order_refund", origin, amount=amount)
    store_order(state, order_id, updated, order)
    return [{"type": "partial_refund", "order_id": order_id, "amount": amount, "escrow": updated.escrow}]


def apply_dispute_open(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """→ disputed: by the buyer from shipped, delivered or return_requested; by the
    merchant only from return_requested; only on orders that name an arbiter."""
    order_id = payload["order_id"]
    order = require_order(state, order_id)
    if context.sender not in (order.buyer, order.merchant):
        raise RuleError("forbidden", "sender: only the order's buyer or merchant may open a dispute")
    if context.sender == order.merchant:
        require_state(order, ("return_requested",), "open a merchant's dispute on")
    else:
        require_state(order, ("shipped", "delivered", "return_requested"), "open a dispute on")
    if order.arbiter is None:
        raise RuleError("invalid_state", "payload.order_id: the order has no arbiter, so no disputes")
    origin = Origin.of_tx(context)
    moved = with_history(
        enter_state(order, "disputed", origin, context.block.params), "dispute_open", origin,
        reason=payload["reason"], opened_by=context.sender,
    )
    store_order(state, order_id, moved, order)
    return [order_event(order_id, order, moved, "dispute_open")]


def apply_dispute_resolve(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """disputed → resolved by the order's arbiter: fee to the arbiter, buyer_amount to the
    buyer, the rest to the merchant."""
    order_id, buyer_amount = payload["order_id"], payload["buyer_amount"]
    order = require_order(state, order_id)
    if order.arbiter is None or context.sender != order.arbiter:
        raise RuleError("forbidden", "sender: only the order's arbiter may resolve its dispute")
    require_state(order, ("disputed",), "resolve")
    fee = order.escrow * context.block.params.arbiter_fee_bps // 10000
    if buyer_amount > order.escrow - fee:
        raise RuleError("invalid_field", f"payload.buyer_amount: at most {order.escrow - fee} after the arbiter fee")
    return finish_by_tx(state, context, order_id, order, "resolved", "dispute_resolve", buyer_amount=buyer_amount,
                   ruling=payload["ruling"])
