"""Listings: goods for sale in a shop, with stock or unique items (PROTOCOL §4, R22)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.primitives.limits import UINT64_MAX
from marketplace_tx.rules.context import Origin, TxContext
from marketplace_tx.rules.items import list_item, load_item, release_item, reserve_item, unlist_item
from marketplace_tx.rules.records import load_record, store_record
from marketplace_tx.rules.shops import require_shop
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import listing_key
from marketplace_tx.speedups import evolve


@dataclass(frozen=True)
class Listing:
    """Goods offered by a shop at a unit price."""

    shop_id: bytes
    """The shop selling it."""
    title: str
    """Display title, 1..128 bytes."""
    price: int
    """µMKT per unit."""
    stock: int
    """Units available for new orders (for item listings: unreserved items)."""
    active: bool
    """Whether it takes new orders."""
    item_listing: bool
    """True if it sells unique items (R22): stock follows the items, no `stock_delta`."""
    created_at: int
    """Block time of creation."""
    height: int
    """Height of creation."""
    sold: int = 0
    """Units sold by completed orders."""
    description: str | None = None
    """Free text, ≤ 2000 bytes."""
    item_ids: tuple[str, ...] = ()
    """Unsold items still attached, in list order (reserved ones included)."""
    reserved_items: tuple[str, ...] = ()
    """Items reserved by open orders."""
    tags: tuple[str, ...] = ()
    """Search tags, ≤ 8 of ≤ 32 bytes."""
    metadata_hash: bytes | None = None
    """Hash of off-chain metadata (photos, specs)."""
    digital: bool | None = None
    """True if it sells digital goods delivered on chain by `order_deliver` (R41); absent otherwise."""


def load_listing(state: State, listing_id: bytes) -> Listing | None:
    """The listing `listing_id`, or None."""
    return load_record(state, listing_key(listing_id), Listing)


def require_listing(state: State, listing_id: bytes) -> Listing:
    """The listing, or `not_found`."""
    listing = load_listing(state, listing_id)
    if listing is None:
        raise RuleError("not_found", f"payload.listing_id: no listing {listing_id.hex()}")
    return listing


def store_listing(state: State, listing_id: bytes, listing: Listing) -> None:
    """Write a listing."""
    store_record(state, listing_key(listing_id), listing)


def apply_listing_create(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """List goods in the sender's shop; with `item_ids`, stock must equal their number (R22).

    `digital: true` (R41) with `item_ids` is `invalid_field`, checked first: it is a fault
    of the payload alone (the schema step of the error precedence), though admission does
    not check it (docs/protocol-decisions.md).
    """
    item_ids = payload.get("item_ids", [])
    digital = payload.get("digital", False)
    if digital and item_ids:
        raise RuleError("invalid_field", "payload.digital: a digital listing cannot sell unique items (item_ids)")
    if len(set(item_ids)) != len(item_ids):
        raise RuleError("invalid_field", "payload.item_ids: an item is listed twice")
    shop = require_shop(state, payload["shop_id"])
    items = []
    for position, item_id in enumerate(item_ids):
        item = load_item(state, item_id)
        if item is None:
            raise RuleError("not_found", f"payload.item_ids[{position}]: no item {item_id!r}")
        items.append(item)
    if shop.owner != context.sender:
        raise RuleError("forbidden", "sender: only the shop's owner may list in it")
    for position, item in enumerate(items):
        if item.owner != context.sender or item.custodian != context.sender:
            raise RuleError("forbidden", f"payload.item_ids[{position}]: the seller must own and hold the item")
    if not shop.open:
        raise RuleError("invalid_state", "payload.shop_id: the shop is closed")
    for position, item in enumerate(items):
        if item.listing_id is not None:
            raise RuleError("invalid_state", f"payload.item_ids[{position}]: the item is in another active listing")
    if item_ids and payload["stock"] != len(item_ids):
        raise RuleError("invalid_field", "payload.stock: must equal the number of item_ids")
    listing = Listing(
        shop_id=payload["shop_id"],
        title=payload["title"],
        price=payload["price"],
        stock=payload["stock"],
        active=True,
        item_listing=bool(item_ids),
        created_at=context.block.time,
        height=context.block.height,
        description=payload.get("description"),
        item_ids=tuple(item_ids),
        tags=tuple(payload.get("tags", ())),
        metadata_hash=payload.get("metadata_hash"),
        digital=True if digital else None,
    )
    store_listing(state, context.tx_hash, listing)
    origin = Origin.of_tx(context)
    for item_id in item_ids:
        list_item(state, item_id, context.tx_hash, origin, context.sender)
    return [{"type": "listing_created", "listing_id": context.tx_hash, "shop_id": listing.shop_id}]


def apply_listing_update(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Change price, stock, activity or text of a listing; only the shop's owner may.

    Deactivating an item listing frees its unreserved items (they may be listed or
    transferred again); reactivating it does not take them back.
    """
    listing_id = payload["listing_id"]
    listing = require_listing(state, listing_id)
    shop = require_shop(state, listing.shop_id)
    if shop.owner != context.sender:
        raise RuleError("forbidden", "sender: only the shop's owner may update its listings")
    changes: dict[str, Any] = {name: payload[name] for name in ("price", "title", "description") if name in payload}
    if "tags" in payload:
        changes["tags"] = tuple(payload["tags"])
    if "stock_delta" in payload:
        if listing.item_listing:
            raise RuleError("invalid_field", "payload.stock_delta: an item listing's stock follows its items")
        stock = listing.stock + payload["stock_delta"]
        if stock < 0 or stock > UINT64_MAX:
            raise RuleError("invalid_field", f"payload.stock_delta: stock would be {stock}")
        changes["stock"] = stock
    if "active" in payload:
        changes["active"] = payload["active"]
        if listing.item_listing and not payload["active"] and listing.active:
            free = [item_id for item_id in listing.item_ids if item_id not in listing.reserved_items]
            for item_id in free:
                unlist_item(state, item_id)
            changes["item_ids"] = listing.reserved_items
            changes["stock"] = 0
    store_listing(state, listing_id, evolve(listing, **changes))
    return [{"type": "listing_updated", "listing_id": listing_id, "fields": sorted(payload.keys() - {"listing_id"})}]


def take_stock(state: State, listing_id: bytes, listing: Listing, quantity: int, order_id: bytes) -> tuple[str, ...]:
    """Reserve `quantity` units for an order; items: the first unreserved in list order (R22)."""
    reserved: tuple[str, ...] = ()
    if listing.item_listing:
        reserved = tuple(i for i in listing.item_ids if i not in listing.reserved_items)[:quantity]
        for item_id in reserved:
            reserve_item(state, item_id, order_id)
    store_listing(
        state,
        listing_id,
        evolve(listing, stock=listing.stock - quantity, reserved_items=listing.reserved_items + reserved),
    )
    return reserved


def return_stock(state: State, listing_id: bytes, quantity: int, item_ids: tuple[str, ...]) -> None:
    """An order ended without sale: its units and items go back to the listing (R14)."""
    listing = load_listing(state, listing_id)
    assert listing is not None
    reserved = tuple(i for i in listing.reserved_items if i not in item_ids)
    for item_id in item_ids:
        release_item(state, item_id, listing.active)
    if listing.item_listing:
        kept = listing.item_ids if listing.active else tuple(i for i in listing.item_ids if i not in item_ids)
        available = [i for i in kept if i not in reserved]
        store_listing(state, listing_id, evolve(listing, item_ids=kept, reserved_items=reserved, stock=len(available)))
    else:
        store_listing(state, listing_id, evolve(listing, stock=min(listing.stock + quantity, UINT64_MAX)))


def record_sale(state: State, listing_id: bytes, quantity: int, item_ids: tuple[str, ...]) -> None:
    """A completed order: its units count as sold (a stat saturating at 2^64−1 like the
    reputation counters, so that a completion never fails, R11) and its items leave the listing."""
    listing = load_listing(state, listing_id)
    assert listing is not None
    store_listing(
        state,
        listing_id,
        evolve(
            listing,
            sold=min(listing.sold + quantity, UINT64_MAX),
            item_ids=tuple(i for i in listing.item_ids if i not in item_ids),
            reserved_items=tuple(i for i in listing.reserved_items if i not in item_ids),
        ),
    )
