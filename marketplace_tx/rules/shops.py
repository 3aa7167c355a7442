"""Shops: `shop_create` and `shop_update` (PROTOCOL §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.accounts import has_role
from marketplace_tx.rules.context import TxContext
from marketplace_tx.rules.records import load_record, store_record
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import shop_key
from marketplace_tx.speedups import evolve


@dataclass(frozen=True)
class Shop:
    """A merchant's shop."""

    owner: bytes
    """The merchant who created it; "merchant" in the order rules."""
    name: str
    """Display name, 1..64 bytes."""
    points_bps: int
    """Loyalty points earned per µMKT paid to the merchant, in basis points (R21)."""
    max_redeem_bps: int
    """Most of an order's price payable with points, in basis points (R21)."""
    open: bool
    """Whether it takes new orders."""
    created_at: int
    """Block time of its creation."""
    height: int
    """Height of its creation."""
    description: str | None = None
    """Free text, ≤ 1000 bytes."""
    arbiters: tuple[bytes, ...] = ()
    """Arbiters its orders may name; none means no disputes and unconditional returns."""


def load_shop(state: State, shop_id: bytes) -> Shop | None:
    """The shop with id `shop_id`, or None."""
    return load_record(state, shop_key(shop_id), Shop)


def require_shop(state: State, shop_id: bytes, field: str = "payload.shop_id") -> Shop:
    """The shop, or `not_found`."""
    shop = load_shop(state, shop_id)
    if shop is None:
        raise RuleError("not_found", f"{field}: no shop {shop_id.hex()}")
    return shop


def store_shop(state: State, shop_id: bytes, shop: Shop) -> None:
    """Write a shop."""
    store_record(state, shop_key(shop_id), shop)


def _reject_duplicate_arbiters(payload: dict[str, Any]) -> None:
    """Schema-level check (first in R12 order): no arbiter twice."""
    arbiters = payload.get("arbiters", [])
    if len(set(arbiters)) != len(arbiters):
        raise RuleError("invalid_field", "payload.arbiters: an arbiter is listed twice")


def _check_arbiters(state: State, owner: bytes, arbiters: list[bytes]) -> None:
    for arbiter in arbiters:
        if arbiter == owner:
            raise RuleError("forbidden", "payload.arbiters: the shop's owner cannot arbitrate its orders")
        if not has_role(state, arbiter, "arbiter"):
            raise RuleError("forbidden", f"payload.arbiters: {arbiter.hex()} does not hold the arbiter role")


def apply_shop_create(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Open a shop owned by the sender; needs `merchant` unless `open_merchants` (§4)."""
    _reject_duplicate_arbiters(payload)
    arbiters = payload.get("arbiters", [])
    if not context.block.params.open_merchants and not has_role(state, context.sender, "merchant"):
        raise RuleError("forbidden", "sender: opening a shop needs the merchant role")
    _check_arbiters(state, context.sender, arbiters)
    shop = Shop(
        owner=context.sender,
        name=payload["name"],
        points_bps=payload["points_bps"],
        max_redeem_bps=payload["max_redeem_bps"],
        open=True,
        created_at=context.block.time,
        height=context.block.height,
        description=payload.get("description"),
        arbiters=tuple(arbiters),
    )
    store_shop(state, context.tx_hash, shop)
    return [{"type": "shop_created", "shop_id": context.tx_hash, "owner": context.sender, "name": shop.name}]


UPDATABLE_FIELDS = ("name", "description", "points_bps", "max_redeem_bps", "arbiters", "open")
"""Shop fields `shop_update` may change."""


def apply_shop_update(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Change a shop's fields; only its owner may. Existing orders keep their terms."""
    _reject_duplicate_arbiters(payload)
    shop_id = payload["shop_id"]
    shop = require_shop(state, shop_id)
    if shop.owner != context.sender:
        raise RuleError("forbidden", "sender: only the shop's owner may update it")
    if "arbiters" in payload:
        _check_arbiters(state, shop.owner, payload["arbiters"])
    changes = {name: payload[name] for name in UPDATABLE_FIELDS if name in payload}
    if "arbiters" in changes:
        changes["arbiters"] = tuple(changes["arbiters"])
    store_shop(state, shop_id, evolve(shop, **changes))
    return [{"type": "shop_updated", "shop_id": shop_id, "fields": sorted(changes)}]
