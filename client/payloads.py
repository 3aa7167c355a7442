"""Payloads of the marketplace transactions (PROTOCOL §4), built from parsed values: the
CLI's options, or a script's own (the SDK, docs/sdk.md).

Pure functions: values in, payload map out. Optional options left unset (`None`, or an
empty list) become absent keys, never nil (R1). Nothing here checks chain state; the
schema check (`marketplace_tx.rules.schema.check_payload`) runs before signing, and the
rules run on the chain. `parse_*` helpers turn option text into values and raise
`PayloadError` naming the option.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from marketplace_tx.rules.schema import ITEM_ID_PATTERN

MAX_BPS = 10_000
"""100 % in basis points."""

CREATED_OBJECTS = {"shop_create": "shop id", "listing_create": "listing id", "order_place": "order id"}
"""Transactions whose hash is the id of the object they create (R9), and what to call it."""


class PayloadError(ValueError):
    """An option value that cannot go into a payload, and which option it was."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        """The command-line option, e.g. `--points-bps`."""
        self.message = message
        """What is wrong with it."""


# --- parsing option text ------------------------------------------------------------


def parse_id(text: str, option: str) -> bytes:
    """A 32-byte id (shop, listing, order) or hash from 64 hex characters."""
    cleaned = text.strip().lower()
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if len(cleaned) != 64 or not re.fullmatch(r"[0-9a-f]{64}", cleaned):
        raise PayloadError(option, f"{text!r} is not 64 hex characters (an id is a transaction hash)")
    return bytes.fromhex(cleaned)


def parse_bps(text: str, option: str) -> int:
    """Basis points from `500`, `500bps`, `5%` or `2.5%`, within 0..10000."""
    cleaned = text.strip().lower().replace("_", "")
    try:
        if cleaned.endswith("%"):
            value = Decimal(cleaned[:-1].strip()) * 100
        else:
            value = Decimal(cleaned.removesuffix("bps").strip())
    except InvalidOperation:
        raise PayloadError(option, f"{text!r} is not basis points: write e.g. 500 or 5%") from None
    if value != value.to_integral_value():
        raise PayloadError(option, f"{text!r} is not a whole number of basis points (0.01 %)")
    if not 0 <= value <= MAX_BPS:
        raise PayloadError(option, f"{text!r} must be between 0 and 10000 basis points (100 %)")
    return int(value)


def parse_signed(text: str, option: str) -> int:
    """A signed integer such as `+5`, `-3` or `12`."""
    cleaned = text.strip().replace("_", "")
    if not re.fullmatch(r"[+-]?[0-9]+", cleaned):
        raise PayloadError(option, f"{text!r} is not a whole number such as +5 or -3")
    return int(cleaned)


def parse_item_id(text: str, option: str = "--item-id") -> str:
    """A unique item's id: 1..64 of `[A-Za-z0-9._:-]` (§4)."""
    if not ITEM_ID_PATTERN.fullmatch(text):
        raise PayloadError(option, f"{text!r}: 1 to 64 letters, digits or . _ : -")
    return text


def sha256_of(data: bytes) -> bytes:
    """SHA-256 of a document whose hash goes on chain (metadata, KYC, certificates)."""
    return hashlib.sha256(data).digest()


def one_hash(document: bytes | None, hash_text: str | None, option: str) -> bytes | None:
    """The hash from a document's bytes or from hex; at most one of them may be given."""
    if document is not None and hash_text is not None:
        raise PayloadError(option, "give the file or the hash, not both")
    if document is not None:
        return sha256_of(document)
    if hash_text is not None:
        return parse_id(hash_text, option)
    return None


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """Drop unset options: `None` and empty lists (R1: absent, never nil or empty)."""
    payload: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            if not value:
                continue
            value = list(value)
        payload[name] = value
    return payload


# --- shops and listings -------------------------------------------------------------


def shop_create(name: str, points_bps: int = 0, max_redeem_bps: int = 0, description: str | None = None,
                arbiters: Iterable[bytes] = ()) -> dict[str, Any]:
    """`shop_create`: a shop owned by the sender."""
    return _compact({"name": name, "description": description, "points_bps": points_bps,
                     "max_redeem_bps": max_redeem_bps, "arbiters": tuple(arbiters)})


def shop_update(shop_id: bytes, name: str | None = None, description: str | None = None,
                points_bps: int | None = None, max_redeem_bps: int | None = None,
                arbiters: Iterable[bytes] = (), open: bool | None = None) -> dict[str, Any]:
    """`shop_update`: only the fields given change; at least one is needed."""
    payload = _compact({"shop_id": shop_id, "name": name, "description": description, "points_bps": points_bps,
                        "max_redeem_bps": max_redeem_bps, "arbiters": tuple(arbiters), "open": open})
    if len(payload) == 1:
        raise PayloadError("shop-update", "give at least one field to change (e.g. --name, --closed)")
    return payload


def listing_create(shop_id: bytes, title: str, price: int, stock: int | None = None,
                   description: str | None = None, item_ids: Iterable[str] = (), tags: Iterable[str] = (),
                   metadata_hash: bytes | None = None, digital: bool = False) -> dict[str, Any]:
    """`listing_create`: with item ids, stock defaults to their number (R22); `digital` sells goods
    delivered on chain by `order_deliver` (R41), never unique items."""
    item_ids = tuple(item_ids)
    if digital and item_ids:
        raise PayloadError("--digital", "a digital listing cannot sell unique items (--item-id) (R41)")
    if stock is None:
        if not item_ids:
            raise PayloadError("--stock", "required unless the listing sells unique items (--item-id)")
        stock = len(item_ids)
    return _compact({"shop_id": shop_id, "title": title, "description": description, "price": price,
                     "stock": stock, "item_ids": item_ids, "tags": tuple(tags), "metadata_hash": metadata_hash,
                     "digital": True if digital else None})


def listing_update(listing_id: bytes, price: int | None = None, stock_delta: int | None = None,
                   active: bool | None = None, title: str | None = None, description: str | None = None,
                   tags: Iterable[str] = ()) -> dict[str, Any]:
    """`listing_update`: only the fields given change; at least one is needed."""
    payload = _compact({"listing_id": listing_id, "price": price, "stock_delta": stock_delta, "active": active,
                        "title": title, "description": description, "tags": tuple(tags)})
    if len(payload) == 1:
        raise PayloadError("listing-update", "give at least one field to change (e.g. --price, --stock-delta)")
    return payload


# --- orders, logistics, after-sales -------------------------------------------------


def order_place(listing_id: bytes, quantity: int, max_unit_price: int, shipping: bytes,
                arbiter: bytes | None = None, redeem_points: int | None = None) -> dict[str, Any]:
    """`order_place`: `shipping` is the address already sealed to the merchant (R13)."""
    return _compact({"listing_id": listing_id, "quantity": quantity, "max_unit_price": max_unit_price,
                     "shipping": shipping, "arbiter": arbiter, "redeem_points": redeem_points or None})


def order_only(order_id: bytes) -> dict[str, Any]:
    """`order_accept`, `order_cancel`, `order_confirm`: just the order."""
    return {"order_id": order_id}


def order_with_reason(order_id: bytes, reason: str) -> dict[str, Any]:
    """`order_reject`, `return_request`, `dispute_open`: the order and a reason."""
    return {"order_id": order_id, "reason": reason}


def order_ship(order_id: bytes, carrier: bytes, tracking: str,
               shipping_for_carrier: bytes | None = None) -> dict[str, Any]:
    """`order_ship`: optionally with the address re-sealed to the carrier."""
    return _compact({"order_id": order_id, "carrier": carrier, "tracking": tracking,
                     "shipping_for_carrier": shipping_for_carrier})


def order_deliver(order_id: bytes, sealed: bytes) -> dict[str, Any]:
    """`order_deliver`: digital goods already sealed to the buyer (`client.sealing.seal_content`, R41)."""
    return {"order_id": order_id, "content": sealed}


def shipment_update(order_id: bytes, status: str, location: str, note: str | None = None) -> dict[str, Any]:
    """`shipment_update`: a carrier's event; `delivered` moves the order to delivered."""
    return _compact({"order_id": order_id, "status": status, "location": location, "note": note})


def order_refund(order_id: bytes, amount: int) -> dict[str, Any]:
    """`order_refund`: the whole escrow ends the order, less is an offer (R14)."""
    return {"order_id": order_id, "amount": amount}


def dispute_resolve(order_id: bytes, buyer_amount: int, ruling: str) -> dict[str, Any]:
    """`dispute_resolve`: the arbiter's split of the escrow."""
    return {"order_id": order_id, "buyer_amount": buyer_amount, "ruling": ruling}


def review_submit(order_id: bytes, rating: int, text: str | None = None) -> dict[str, Any]:
    """`review_submit`: 1..5 stars on a finished order (R19)."""
    return _compact({"order_id": order_id, "rating": rating, "text": text})


def review_reply(order_id: bytes, text: str) -> dict[str, Any]:
    """`review_reply`: the merchant's one answer."""
    return {"order_id": order_id, "text": text}


# --- supply chain -------------------------------------------------------------------


def item_register(item_id: str, description: str, metadata_hash: bytes | None = None) -> dict[str, Any]:
    """`item_register`: a unique item owned and held by the sender."""
    return _compact({"item_id": item_id, "description": description, "metadata_hash": metadata_hash})


def item_event(item_id: str, kind: str, location: str, data_hash: bytes | None = None,
               note: str | None = None) -> dict[str, Any]:
    """`item_event`: a supply-chain event (harvested, inspected, stored …)."""
    return _compact({"item_id": item_id, "kind": kind, "location": location, "data_hash": data_hash, "note": note})


def item_transfer(item_id: str, to: bytes, custody_only: bool) -> dict[str, Any]:
    """`item_transfer`: custody only, or ownership and custody."""
    return {"item_id": item_id, "to": to, "custody_only": custody_only}
