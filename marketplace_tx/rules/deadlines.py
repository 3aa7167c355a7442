"""Order deadlines, enforced by the chain itself at the start of every block (PROTOCOL R15, R29).

Before a block's transactions, every order whose deadline is ≤ the block time moves,
in order of (deadline, order_id): the schedule's keys sort exactly that way.
"""

from __future__ import annotations

from typing import Any

from marketplace_tx.rules.context import BlockContext, Origin
from marketplace_tx.rules.order_records import Order, load_order
from marketplace_tx.rules.settlement import finish_order
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import DEADLINE

TIMEOUT_OUTCOMES = {
    "placed": "expired",
    "accepted": "expired",
    "shipped": "completed",
    "delivered": "completed",
    "return_requested": "refunded",
    "disputed": "refunded",
}
"""Where each non-terminal state goes when its deadline passes (R15)."""

UPPER = b"\xff" * 40


def due_order_ids(state: State, time: int) -> list[bytes]:
    """Orders whose deadline is ≤ `time`, in (deadline, order_id) order."""
    end = DEADLINE + (time + 1).to_bytes(8, "big")
    return [key[9:] for key, _ in state.scan(DEADLINE, end)]


def next_deadline(state: State) -> int | None:
    """The earliest scheduled deadline, or None: the node makes a block then (R29)."""
    for key, _ in state.scan(DEADLINE, DEADLINE + UPPER):
        return int.from_bytes(key[1:9], "big")
    return None


def fire_deadlines(state: State, block: BlockContext) -> list[dict[str, Any]]:
    """Move every due order to its timeout state with the same effects as by transaction (R14)."""
    events = []
    origin = Origin.of_deadline(block)
    for order_id in due_order_ids(state, block.time):
        order = load_order(state, order_id)
        assert order is not None and order.state in TIMEOUT_OUTCOMES, "schedule points at a live order"
        ended: Order = finish_order(state, order_id, order, TIMEOUT_OUTCOMES[order.state], origin, block.params, "deadline")
        events.append({"type": "order_state", "order_id": order_id, "from": order.state, "to": ended.state, "by": "deadline"})
    return events
