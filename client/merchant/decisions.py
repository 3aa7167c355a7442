"""What the merchant agent does with an order, per merchant.toml: pure functions of the
order's JSON (`GET /orders/{id}`) and the config, so that every rule is tested alone.

- a placed parcel order is accepted if `[accept] auto`, its escrow is at most `max_amount`
  (0: no limit) and its listing is in `listings` (empty: all); otherwise it is left for a
  person (the agent logs why);
- a placed or accepted digital order of a `[[digital]]` listing is delivered from the codes
  (or rejected when they run out); a digital order of another listing is left for a person;
- an accepted parcel order whose ship deadline is within `warn_before_ms` gets one warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.merchant.config import MerchantConfig

OPEN_STATES = ("placed", "accepted")
"""States in which the merchant has something to do."""

OUT_OF_STOCK_REASON = "out of stock: no codes left"
"""The `order_reject` reason when the codes run out (the buyer's escrow comes back at once)."""


@dataclass(frozen=True)
class Decision:
    """What to do with one order."""

    action: str
    """`accept`, `deliver`, `leave` (for a person) or `none` (nothing to do)."""
    reason: str = ""
    """Why, for the log."""


def is_mine(order: dict[str, Any], config: MerchantConfig, merchant: bytes) -> bool:
    """True iff the order is of a shop this agent runs (the key's, and in `[agent] shops` if given)."""
    if order.get("merchant") != merchant.hex():
        return False
    return not config.shops or bytes.fromhex(order["shop_id"]) in config.shops


def decide(order: dict[str, Any], config: MerchantConfig) -> Decision:
    """The agent's decision for an order in its current state."""
    state = order.get("state")
    if state not in OPEN_STATES:
        return Decision("none", f"it is {state}")
    listing = bytes.fromhex(order["listing_id"])
    if order.get("digital"):
        if listing in config.digital_listings:
            return Decision("deliver")
        return Decision("leave", "a digital order of a listing not in [[digital]]") if state == "placed" else Decision("none")
    if state != "placed":
        return Decision("none", "accepted: to be shipped by a person")
    rules = config.accept
    if not rules.auto:
        return Decision("leave", "[accept] auto is off")
    if rules.max_amount and int(order["escrow"]) > rules.max_amount:
        return Decision("leave", f"escrow {order['escrow']} µMKT is above [accept] max_amount {rules.max_amount}")
    if rules.listings and listing not in rules.listings:
        return Decision("leave", "its listing is not in [accept] listings")
    return Decision("accept")


def needs_deadline_warning(order: dict[str, Any], now_ms: int, warn_before_ms: int) -> bool:
    """True iff `order` is an accepted parcel order whose deadline is at most `warn_before_ms` after `now_ms`."""
    deadline = order.get("deadline")
    return (order.get("state") == "accepted" and not order.get("digital") and isinstance(deadline, int)
            and deadline - now_ms <= warn_before_ms)


def delivery_text(codes: list[str]) -> bytes:
    """The content delivered for an order: its codes, one per line (UTF-8)."""
    return "\n".join(codes).encode("utf-8")
