"""Placing and fulfilling orders: place, accept, reject, cancel, ship, deliver, shipment updates, confirm (§5, R41).

Escrow: `order_place` moves `price × quantity − redeem_points` from the buyer into the
order (R13); the settlement module pays it out when the order ends.
"""

from __future__ import annotations

from typing import Any

from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.primitives.limits import UINT64_MAX
from marketplace_tx.rules.accounts import debit, has_role
from marketplace_tx.rules.context import Origin, TxContext
from marketplace_tx.rules.listings import require_listing, take_stock
from marketplace_tx.rules.order_records import (
    Order,
    enter_state,
    require_order,
    require_state,
    store_order,
    with_history,
)
from marketplace_tx.rules.points import take_points
from marketplace_tx.rules.reputation import record_outcome
from marketplace_tx.rules.settlement import finish_order
from marketplace_tx.rules.shops import require_shop
from marketplace_tx.rules.state import State
from marketplace_tx.speedups import evolve


def order_event(order_id: bytes, before: Order, after: Order, tx_type: str) -> dict[str, Any]:
    """The receipt event of a state change."""
    return {"type": "order_state", "order_id": order_id, "from": before.state, "to": after.state, "by": tx_type}


def apply_order_place(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Order from a listing, paying into escrow (R13). Errors in R12 order."""
    listing_id, quantity = payload["listing_id"], payload["quantity"]
    redeem = payload.get("redeem_points", 0)
    arbiter = payload.get("arbiter")
    listing = require_listing(state, listing_id)
    shop = require_shop(state, listing.shop_id, "listing.shop_id")
    buyer = context.sender
    if buyer == shop.owner:
        raise RuleError("forbidden", "sender: a shop's owner cannot order from it")
    if arbiter is not None:
        if arbiter in (buyer, shop.owner):
            raise RuleError("forbidden", "payload.arbiter: may be neither the buyer nor the shop's owner")
        if not has_role(state, arbiter, "arbiter"):
            raise RuleError("forbidden", "payload.arbiter: does not hold the arbiter role")
    if not listing.active or not shop.open:
        raise RuleError("invalid_state", "payload.listing_id: the listing is inactive or its shop closed")
    if listing.price > payload["max_unit_price"]:
        raise RuleError("price_changed", f"payload.max_unit_price: the price is now {listing.price}")
    if quantity > listing.stock:
        raise RuleError("out_of_stock", f"payload.quantity: {listing.stock} in stock")
    if shop.arbiters and arbiter not in shop.arbiters:
        raise RuleError("invalid_field", "payload.arbiter: name one of the shop's arbiters")
    if not shop.arbiters and arbiter is not None:
        raise RuleError("invalid_field", "payload.arbiter: this shop has no arbiters")
    total = listing.price * quantity
    if total > UINT64_MAX:
        raise RuleError("invalid_field", "payload.quantity: price × quantity exceeds 2^64-1")
    if redeem > total * shop.max_redeem_bps // 10000:
        raise RuleError("invalid_field", "payload.redeem_points: more than the shop's max_redeem_bps allows")
    if redeem:
        take_points(state, listing.shop_id, buyer, redeem)
    amount = total - redeem
    debit(state, buyer, amount)
    item_ids = take_stock(state, listing_id, listing, quantity, context.tx_hash)
    origin = Origin.of_tx(context)
    order = Order(
        buyer=buyer,
        merchant=shop.owner,
        shop_id=listing.shop_id,
        listing_id=listing_id,
        quantity=quantity,
        unit_price=listing.price,
        total_price=total,
        escrow=amount,
        points_bps=shop.points_bps,
        state="placed",
        shipping=payload["shipping"],
        placed_at=origin.time,
        history=(),
        redeem_points=redeem,
        arbiter=arbiter,
        item_ids=item_ids,
        digital=listing.digital,
    )
    order = with_history(enter_state(order, "placed", origin, context.block.params), "order_place", origin)
    store_order(state, context.tx_hash, order, None)
    record_outcome(state, order.shop_id, order.merchant, orders_placed=1)
    return [
        {
            "type": "order_placed",
            "order_id": context.tx_hash,
            "buyer": buyer,
            "merchant": shop.owner,
            "escrow": amount,
        }
    ]


def _merchant_order(state: State, context: TxContext, payload: dict[str, Any], action: str) -> Order:
    order = require_order(state, payload["order_id"])
    if context.sender != order.merchant:
        raise RuleError("forbidden", f"sender: only the order's merchant may {action} it")
    return order


def _buyer_order(state: State, context: TxContext, payload: dict[str, Any], action: str) -> Order:
    order = require_order(state, payload["order_id"])
    if context.sender != order.buyer:
        raise RuleError("forbidden", f"sender: only the order's buyer may {action} it")
    return order


def _move(state: State, context: TxContext, order_id: bytes, order: Order, new_state: str, tx_type: str,
          **changes: Any) -> list[dict[str, Any]]:
    origin = Origin.of_tx(context)
    moved = enter_state(evolve(order, **changes), new_state, origin, context.block.params)
    details = {name: value for name, value in changes.items() if name in ("carrier", "tracking")}
    moved = with_history(moved, tx_type, origin, **details)
    store_order(state, order_id, moved, order)
    return [order_event(order_id, order, moved, tx_type)]


def finish_by_tx(state: State, context: TxContext, order_id: bytes, order: Order, new_state: str, tx_type: str,
                 **details: Any) -> list[dict[str, Any]]:
    """End an order by transaction (settlement in `finish_order`)."""
    ended = finish_order(state, order_id, order, new_state, Origin.of_tx(context), context.block.params, tx_type,
                         **details)
    return [order_event(order_id, order, ended, tx_type)]


def apply_order_accept(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """placed → accepted, by the merchant."""
    order = _merchant_order(state, context, payload, "accept")
    require_state(order, ("placed",), "accept")
    return _move(state, context, payload["order_id"], order, "accepted", "order_accept")


def apply_order_reject(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """placed, accepted → rejected: escrow back to the buyer, stock and points restored."""
    order = _merchant_order(state, context, payload, "reject")
    require_state(order, ("placed", "accepted"), "reject")
    return finish_by_tx(state, context, payload["order_id"], order, "rejected", "order_reject", reason=payload["reason"])


def apply_order_cancel(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """placed → cancelled, by the buyer: escrow back, stock and points restored."""
    order = _buyer_order(state, context, payload, "cancel")
    require_state(order, ("placed",), "cancel")
    return finish_by_tx(state, context, payload["order_id"], order, "cancelled", "order_cancel")


def apply_order_ship(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """placed, accepted → shipped, naming the carrier (who holds `carrier`, and is neither party)."""
    order = _merchant_order(state, context, payload, "ship")
    carrier = payload["carrier"]
    if carrier in (order.buyer, order.merchant):
        raise RuleError("forbidden", "payload.carrier: may be neither the buyer nor the merchant")
    if not has_role(state, carrier, "carrier"):
        raise RuleError("forbidden", "payload.carrier: does not hold the carrier role")
    require_state(order, ("placed", "accepted"), "ship")
    if order.digital:
        raise RuleError("invalid_state", "payload.order_id: a digital order is delivered by order_deliver, not shipped")
    changes: dict[str, Any] = {"carrier": carrier, "tracking": payload["tracking"]}
    if "shipping_for_carrier" in payload:
        changes["shipping_for_carrier"] = payload["shipping_for_carrier"]
    return _move(state, context, payload["order_id"], order, "shipped", "order_ship", **changes)


def apply_order_deliver(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """placed, accepted → delivered for a digital order: the goods sealed to the buyer (R41).

    From `placed` it accepts and delivers at once. The order keeps the sealed content
    (`delivery`); `delivered_at` starts the confirm window, so silence completes it.
    """
    order = _merchant_order(state, context, payload, "deliver")
    require_state(order, ("placed", "accepted"), "deliver")
    if not order.digital:
        raise RuleError("invalid_state", "payload.order_id: only a digital order is delivered by order_deliver")
    return _move(state, context, payload["order_id"], order, "delivered", "order_deliver", delivery=payload["content"])


def apply_shipment_update(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A carrier's event on a shipped order; `delivered` moves it to delivered."""
    order_id = payload["order_id"]
    order = require_order(state, order_id)
    if order.carrier is None or context.sender != order.carrier:
        raise RuleError("forbidden", "sender: only the order's carrier may post shipment updates")
    require_state(order, ("shipped",), "update the shipment of")
    origin = Origin.of_tx(context)
    details = {name: payload[name] for name in ("status", "location", "note") if name in payload}
    updated = order
    if payload["status"] == "delivered":
        updated = enter_state(order, "delivered", origin, context.block.params)
    updated = with_history(updated, "shipment_update", origin, **details)
    store_order(state, order_id, updated, order)
    events: list[dict[str, Any]] = [{"type": "shipment_update", "order_id": order_id, **details}]
    if updated.state != order.state:
        events.append(order_event(order_id, order, updated, "shipment_update"))
    return events


def apply_order_confirm(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """shipped, delivered, return_requested → completed: escrow to the merchant (R14)."""
    order = _buyer_order(state, context, payload, "confirm")
    require_state(order, ("shipped", "delivered", "return_requested"), "confirm")
    return finish_by_tx(state, context, payload["order_id"], order, "completed", "order_confirm")
