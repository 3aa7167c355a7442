"""Unique items and their provenance: `item_register`, `item_event`, `item_transfer` (R22).

An item has an owner, a custodian (who holds it physically) and an append-only
history. The kinds `registered`, `transfer`, `listed` and `sold` are written only by
the chain itself. While an item is listed or reserved by an order it cannot be
transferred.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.accounts import has_role
from marketplace_tx.rules.context import Origin, TxContext
from marketplace_tx.rules.records import load_record, store_record
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import item_history_key, item_history_prefix, item_key
from marketplace_tx.speedups import decode_trusted, evolve


@dataclass(frozen=True)
class Item:
    """A unique good with a supply-chain history."""

    owner: bytes
    """Who owns it."""
    custodian: bytes
    """Who holds it physically (a carrier, a warehouse, the owner)."""
    description: str
    """What it is, ≤ 256 bytes."""
    producer: bytes
    """Who registered it."""
    registered_at: int
    """Block time of registration."""
    history_length: int
    """Number of history entries (the next entry's sequence number)."""
    metadata_hash: bytes | None = None
    """Hash of off-chain metadata (photos, certificates)."""
    listing_id: bytes | None = None
    """The listing it is attached to while listed or reserved."""
    order_id: bytes | None = None
    """The order that reserved it, until that order ends."""


def load_item(state: State, item_id: str) -> Item | None:
    """The item `item_id`, or None."""
    return load_record(state, item_key(item_id), Item)


def require_item(state: State, item_id: str, field: str = "payload.item_id") -> Item:
    """The item, or `not_found`."""
    item = load_item(state, item_id)
    if item is None:
        raise RuleError("not_found", f"{field}: no item {item_id!r}")
    return item


def store_item(state: State, item_id: str, item: Item) -> None:
    """Write an item record."""
    store_record(state, item_key(item_id), item)


MAX_HISTORY = 2**32
"""Entries one item can hold: the sequence in its `h` keys is 4 bytes (R35)."""


def require_history_room(item_id: str, item: Item) -> None:
    """A transaction may add to an item's history only while one entry stays free for the
    `sold` entry a completion adds, which cannot fail (R22, R15); else `invalid_state`."""
    if item.history_length >= MAX_HISTORY - 1:
        raise RuleError("invalid_state", f"payload.item_id: the history of {item_id!r} is full")


def append_history(state: State, item_id: str, item: Item, entry: dict[str, Any]) -> Item:
    """Append one history entry and return the item with its new length (R22)."""
    state.put(item_history_key(item_id, item.history_length), codec.encode(entry))
    updated = evolve(item, history_length=item.history_length + 1)
    store_item(state, item_id, updated)
    return updated


def item_history(state: State, item_id: str) -> list[dict[str, Any]]:
    """Every history entry of an item, oldest first."""
    start, end = item_history_prefix(item_id)
    return [decode_trusted(value) for _, value in state.scan(start, end)]


def apply_item_register(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Register a new unique item owned and held by the sender (producer or merchant)."""
    item_id = payload["item_id"]
    if not (has_role(state, context.sender, "producer") or has_role(state, context.sender, "merchant")):
        raise RuleError("forbidden", "sender: registering items needs the producer or merchant role")
    if load_item(state, item_id) is not None:
        raise RuleError("already_exists", f"payload.item_id: item {item_id!r} is already registered")
    item = Item(
        owner=context.sender,
        custodian=context.sender,
        description=payload["description"],
        producer=context.sender,
        registered_at=context.block.time,
        history_length=0,
        metadata_hash=payload.get("metadata_hash"),
    )
    entry: dict[str, Any] = {"kind": "registered", "actor": context.sender, **Origin.of_tx(context).to_map()}
    if item.metadata_hash is not None:
        entry["data_hash"] = item.metadata_hash
    append_history(state, item_id, item, entry)
    return [{"type": "item_registered", "item_id": item_id, "owner": context.sender}]


def apply_item_event(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Record a supply-chain event; by the owner, the custodian or any inspector."""
    item_id = payload["item_id"]
    item = require_item(state, item_id)
    if context.sender not in (item.owner, item.custodian) and not has_role(state, context.sender, "inspector"):
        raise RuleError("forbidden", "sender: only the owner, the custodian or an inspector may add events")
    require_history_room(item_id, item)
    entry: dict[str, Any] = {
        "kind": payload["kind"],
        "actor": context.sender,
        "location": payload["location"],
        **Origin.of_tx(context).to_map(),
    }
    for name in ("data_hash", "note"):
        if name in payload:
            entry[name] = payload[name]
    append_history(state, item_id, item, entry)
    return [{"type": "item_event", "item_id": item_id, "kind": payload["kind"]}]


def apply_item_transfer(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Hand over custody (owner or custodian) or ownership and custody (owner only)."""
    item_id, recipient, custody_only = payload["item_id"], payload["to"], payload["custody_only"]
    item = require_item(state, item_id)
    allowed = (item.owner, item.custodian) if custody_only else (item.owner,)
    if context.sender not in allowed:
        raise RuleError(
            "forbidden",
            "sender: only the owner or custodian may hand over custody"
            if custody_only
            else "sender: only the owner may transfer ownership",
        )
    if item.listing_id is not None:
        raise RuleError("invalid_state", f"payload.item_id: {item_id!r} is listed or reserved by an order")
    require_history_room(item_id, item)
    updated = evolve(item, custodian=recipient) if custody_only else evolve(item, owner=recipient, custodian=recipient)
    entry = {
        "kind": "transfer",
        "actor": context.sender,
        "to": recipient,
        "custody_only": custody_only,
        **Origin.of_tx(context).to_map(),
    }
    append_history(state, item_id, updated, entry)
    return [{"type": "item_transferred", "item_id": item_id, "to": recipient, "custody_only": custody_only}]


def list_item(state: State, item_id: str, listing_id: bytes, origin: Origin, seller: bytes) -> None:
    """Attach an item to a listing with a `listed` entry (R22)."""
    item = evolve(require_item(state, item_id), listing_id=listing_id)
    require_history_room(item_id, item)
    append_history(state, item_id, item, {"kind": "listed", "actor": seller, "listing_id": listing_id, **origin.to_map()})


def unlist_item(state: State, item_id: str) -> None:
    """Detach an item from its listing (listing deactivated)."""
    store_item(state, item_id, evolve(require_item(state, item_id), listing_id=None, order_id=None))


def reserve_item(state: State, item_id: str, order_id: bytes) -> None:
    """Mark an item as reserved by an order."""
    store_item(state, item_id, evolve(require_item(state, item_id), order_id=order_id))


def release_item(state: State, item_id: str, listing_active: bool) -> None:
    """An order ended without sale: the item goes back to its listing, or is freed if it is inactive."""
    item = require_item(state, item_id)
    store_item(state, item_id, evolve(item, order_id=None, listing_id=item.listing_id if listing_active else None))


def sell_item(state: State, item_id: str, buyer: bytes, order_id: bytes, origin: Origin) -> None:
    """A completed order hands ownership and custody to the buyer with a `sold` entry (R22)."""
    item = evolve(require_item(state, item_id), owner=buyer, custodian=buyer, listing_id=None, order_id=None)
    append_history(state, item_id, item, {"kind": "sold", "order_id": order_id, "to": buyer, **origin.to_map()})
