"""The order record, its states, deadlines and history (PROTOCOL §5, R15, R16, R18)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.context import Origin
from marketplace_tx.rules.records import load_record, store_record
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import deadline_key, order_key
from marketplace_tx.speedups import evolve

TERMINAL_STATES = frozenset({"completed", "cancelled", "rejected", "expired", "refunded", "resolved"})
"""States an order never leaves (R16)."""

ORDER_STATES = (
    "placed",
    "accepted",
    "shipped",
    "delivered",
    "return_requested",
    "disputed",
    *sorted(TERMINAL_STATES),
)
"""Every state of the order state machine (§5)."""

DEADLINE_FIELDS = {
    "placed": ("placed_at", "accept_window_ms"),
    "accepted": ("accepted_at", "ship_window_ms"),
    "shipped": ("shipped_at", "escrow_timeout_ms"),
    "delivered": ("delivered_at", "confirm_window_ms"),
    "return_requested": ("requested_at", "response_window_ms"),
    "disputed": ("opened_at", "arbitration_window_ms"),
}
"""For each non-terminal state: the time it was entered and the window that bounds it (R15)."""

STATE_TIMESTAMPS = {
    "placed": "placed_at",
    "accepted": "accepted_at",
    "shipped": "shipped_at",
    "delivered": "delivered_at",
    "return_requested": "requested_at",
    "disputed": "opened_at",
}


@dataclass(frozen=True)
class Order:
    """A buyer's order of a listing, with its escrow (§5)."""

    buyer: bytes
    """Who placed and pays for it."""
    merchant: bytes
    """The shop's owner when it was placed."""
    shop_id: bytes
    """The shop."""
    listing_id: bytes
    """The listing ordered."""
    quantity: int
    """Units ordered."""
    unit_price: int
    """The listing's price when it was placed (µMKT)."""
    total_price: int
    """unit_price × quantity."""
    escrow: int
    """µMKT held by the chain for this order right now (R17)."""
    points_bps: int
    """The shop's points rate when it was placed (R21)."""
    state: str
    """One of `ORDER_STATES`."""
    shipping: bytes
    """The buyer's address sealed to the merchant's key (R13); opaque to nodes."""
    placed_at: int
    """Block time of `order_place`."""
    history: tuple[dict[str, Any], ...]
    """Every state change and shipment update with time, height and tx (or `deadline`) (R18)."""
    redeem_points: int = 0
    """Points redeemed, one µMKT each (R21)."""
    refunded: int = 0
    """µMKT refunded to the buyer so far."""
    merchant_paid: int = 0
    """µMKT paid to the merchant when the order ended."""
    deadline: int | None = None
    """When the current state times out (R15); None once terminal."""
    arbiter: bytes | None = None
    """Who resolves disputes; None if the shop lists no arbiters."""
    carrier: bytes | None = None
    """The carrier named on shipping."""
    tracking: str | None = None
    """The carrier's tracking number."""
    shipping_for_carrier: bytes | None = None
    """The address re-sealed to the carrier's key."""
    item_ids: tuple[str, ...] = ()
    """Unique items reserved by this order (R22)."""
    accepted_at: int | None = None
    """Block time it was accepted."""
    shipped_at: int | None = None
    """Block time it was shipped."""
    delivered_at: int | None = None
    """Block time the carrier reported delivery, or of `order_deliver` for digital goods (R41)."""
    requested_at: int | None = None
    """Block time the return was requested."""
    opened_at: int | None = None
    """Block time the dispute was opened."""
    ended_at: int | None = None
    """Block time it reached a terminal state (starts the review window, R19)."""
    review: dict[str, Any] | None = None
    """The buyer's review `{rating, text?, time, height, reply?}` (R19)."""
    digital: bool | None = None
    """True if its listing sells digital goods (R41), copied at `order_place`; absent otherwise."""
    delivery: bytes | None = None
    """The goods sealed to the buyer's key by `order_deliver` (R41); opaque to nodes."""


def load_order(state: State, order_id: bytes) -> Order | None:
    """The order `order_id`, or None."""
    return load_record(state, order_key(order_id), Order)


def require_order(state: State, order_id: bytes) -> Order:
    """The order, or `not_found`."""
    order = load_order(state, order_id)
    if order is None:
        raise RuleError("not_found", f"payload.order_id: no order {order_id.hex()}")
    return order


def deadline_of(order: Order, params: Params) -> int | None:
    """When `order` times out in its current state (R15), or None if terminal."""
    if order.state not in DEADLINE_FIELDS:
        return None
    entered_field, window_param = DEADLINE_FIELDS[order.state]
    return getattr(order, entered_field) + getattr(params, window_param)


def store_order(state: State, order_id: bytes, order: Order, previous: Order | None) -> None:
    """Write an order and keep its entry in the deadline schedule current (R15)."""
    if previous is not None and previous.deadline is not None and previous.deadline != order.deadline:
        state.delete(deadline_key(previous.deadline, order_id))
    if order.deadline is not None and (previous is None or previous.deadline != order.deadline):
        state.put(deadline_key(order.deadline, order_id), b"")
    store_record(state, order_key(order_id), order)


def with_history(order: Order, event: str, origin: Origin, **details: Any) -> Order:
    """The order with one more history entry (R18)."""
    entry = {"event": event, "state": order.state, **origin.to_map(), **details}
    return evolve(order, history=order.history + (entry,))


def enter_state(order: Order, new_state: str, origin: Origin, params: Params) -> Order:
    """The order moved to `new_state` at `origin.time`, with its new deadline."""
    changes: dict[str, Any] = {"state": new_state}
    if new_state in STATE_TIMESTAMPS:
        changes[STATE_TIMESTAMPS[new_state]] = origin.time
    if new_state in TERMINAL_STATES:
        changes["ended_at"] = origin.time
    moved = evolve(order, **changes)
    return evolve(moved, deadline=deadline_of(moved, params))


def require_state(order: Order, allowed: tuple[str, ...], action: str) -> None:
    """`invalid_state` unless the order is in one of `allowed` (§5: nothing else is a transition)."""
    if order.state not in allowed:
        raise RuleError("invalid_state", f"payload.order_id: cannot {action} an order that is {order.state}")
