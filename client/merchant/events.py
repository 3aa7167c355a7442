"""Order events as the merchant agent hands them to webhooks (issue 16), with ids that do not
depend on where the event was seen.

An event read from the node's stream (`GET /events`, an `order` event) and the same state
change rebuilt from the order's history (R18) after a `gap` get the same id, so that a
webhook receiver that deduplicates by id sees each change once however the agent learnt it:

    event_id = "evt_" + sha256(order_id ‖ height (8 bytes, big-endian) ‖ tx hash or b"deadline"
                               ‖ to_state (UTF-8))[:16].hex()
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

EVENT_ID_PREFIX = "evt_"
"""Every event id starts with this."""

DEADLINE_ORIGIN = b"deadline"
"""What stands for the transaction hash of a change made by a deadline (R15)."""


def order_event_id(order_id: bytes, height: int, tx_hash: bytes | None, to_state: str) -> str:
    """The id of the order event that moved `order_id` to `to_state` at `height`, by the
    transaction `tx_hash` (None for a deadline)."""
    digest = hashlib.sha256(order_id + height.to_bytes(8, "big") + (tx_hash if tx_hash is not None else DEADLINE_ORIGIN)
                            + to_state.encode("utf-8")).digest()
    return EVENT_ID_PREFIX + digest[:16].hex()


def deadline_warning_id(order_id: bytes, deadline_ms: int) -> str:
    """The id of the warning that `order_id`'s deadline `deadline_ms` is near (one per deadline)."""
    digest = hashlib.sha256(order_id + b"deadline_warning" + deadline_ms.to_bytes(8, "big")).digest()
    return EVENT_ID_PREFIX + digest[:16].hex()


@dataclass(frozen=True)
class OrderChange:
    """One state change of an order, from the stream or from its history."""

    order_id: bytes
    """The order."""
    from_state: str | None
    """Its state before (None when it was placed)."""
    to_state: str
    """Its state after."""
    by: str
    """The transaction type that moved it, or `deadline`."""
    height: int
    """The block of the change."""
    time: int
    """That block's time, ms."""
    tx_hash: bytes | None
    """The transaction, or None for a deadline."""

    @property
    def event_id(self) -> str:
        """`order_event_id` of this change."""
        return order_event_id(self.order_id, self.height, self.tx_hash, self.to_state)

    @property
    def event_type(self) -> str:
        """The webhook type, `order.<to_state>`."""
        return "order." + self.to_state

    def webhook_data(self, order: dict[str, Any]) -> dict[str, Any]:
        """The webhook's `data`: the order's JSON (without the sealed `delivery`) and the change."""
        return {"order": {name: value for name, value in order.items() if name != "delivery"},
                "from": self.from_state, "to": self.to_state, "by": self.by, "height": self.height,
                "time": self.time, "tx": self.tx_hash.hex() if self.tx_hash is not None else None}


def _tx_bytes(value: Any) -> bytes | None:
    if not isinstance(value, str) or value == "deadline":
        return None
    return bytes.fromhex(value)


def change_from_stream(data: dict[str, Any]) -> OrderChange:
    """The change an SSE `order` event describes (`{order_id, from, to, by, height, time, tx}`);
    ValueError/KeyError/TypeError on a malformed one."""
    return OrderChange(bytes.fromhex(data["order_id"]), data.get("from"), str(data["to"]), str(data["by"]),
                       int(data["height"]), int(data["time"]), _tx_bytes(data.get("tx")))


def changes_from_history(order: dict[str, Any], after_height: int = 0) -> Iterator[OrderChange]:
    """The state changes in an order's history (R18) at heights ≥ `after_height`, oldest first:
    entries that did not change the state (a partial refund, a shipment update in transit) are
    not changes. Each has the id its stream event had."""
    order_id = bytes.fromhex(order["id"])
    previous: str | None = None
    for entry in order.get("history", ()):
        state = entry.get("state")
        if state != previous and int(entry["height"]) >= after_height:
            yield OrderChange(order_id, previous, str(state), str(entry["event"]), int(entry["height"]),
                              int(entry["time"]), _tx_bytes(entry.get("tx")))
        previous = state
