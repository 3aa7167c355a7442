"""Human-friendly amounts and tables for the CLI."""

from __future__ import annotations

import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from marketplace_tx.primitives.amounts import MICRO_PER_MKT, format_amount

_AMOUNT = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*(mkt|umkt|µmkt)?\s*", re.IGNORECASE)


def parse_amount(text: str) -> int:
    """µMKT from `1500`, `1500umkt`, `1.5MKT` or `2 mkt`; a bare number is µMKT.

    Raises ValueError for anything else, including fractions of a µMKT.
    """
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not an amount: write e.g. 2.5MKT or 2500000 (µMKT)")
    number, unit = match.group(1).replace("_", ""), (match.group(2) or "umkt").lower()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if unit == "mkt":
        value *= MICRO_PER_MKT
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of µMKT")
    return int(value)


def key_value_table(rows: list[tuple[str, Any]]) -> str:
    """Aligned `name  value` lines."""
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def column_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table with a header row."""
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# --- marketplace views (shops, listings, orders, items) ----------------------------

AMOUNT_FIELDS = frozenset({
    "amount", "arbiter_fee", "balance", "buyer_amount", "escrow", "fee", "max_unit_price", "merchant_amount",
    "merchant_paid", "min_fee", "price", "refunded", "revenue", "total_price", "unit_price",
})
"""JSON fields that hold µMKT and are shown in MKT (counters such as `orders_refunded` are not)."""


def format_time(ms: int | None) -> str:
    """`2025-01-31 12:00:00 UTC` from ms since the Unix epoch; `-` for none."""
    if ms is None:
        return "-"
    seconds, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + (f".{millis:03d}" if millis else "") + " UTC"


def format_bps(bps: int | None) -> str:
    """`5% (500 bps)` from basis points."""
    if bps is None:
        return "-"
    percent = Decimal(bps) / 100
    text = f"{percent.normalize():f}" if percent != percent.to_integral_value() else f"{int(percent)}"
    return f"{text}% ({bps} bps)"


def format_short_amount(micro: int | None) -> str:
    """`12.5 MKT` without the µMKT figure, for tables."""
    if micro is None:
        return "-"
    return format_amount(micro).split(" (")[0]


def stars(rating: int | None) -> str:
    """`★★★★☆ 4/5`."""
    if not rating:
        return "-"
    return "★" * rating + "☆" * (5 - rating) + f" {rating}/5"


def format_value(name: str, value: Any) -> str:
    """A JSON field for humans: amounts in MKT, basis points in %, times as dates, lists joined."""
    lowered = name.lower()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, int):
        if lowered.endswith("bps"):
            return format_bps(value)
        if lowered.endswith("_at") or lowered in ("time", "deadline"):
            return format_time(value)
        if lowered in AMOUNT_FIELDS:
            return format_amount(value)
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items()) or "-"
    return str(value)


def _average(reputation: dict[str, Any]) -> str:
    count = reputation.get("rating_count", 0)
    if not count:
        return "no ratings yet"
    average = reputation.get("avg_rating_x100", 0) / 100
    return f"{average:.2f} / 5 from {count} review(s)"


def reputation_rows(reputation: dict[str, Any] | None, prefix: str = "") -> list[tuple[str, Any]]:
    """Reputation counters (R20) as table rows."""
    if not reputation:
        return [(f"{prefix}reputation", "-")]
    rows: list[tuple[str, Any]] = [
        (f"{prefix}rating", _average(reputation)),
        (f"{prefix}trust score", f"{reputation.get('trust_score', '-')} / 1000"),
    ]
    shown = {"rating_count", "rating_sum", "avg_rating_x100", "trust_score"}
    rows += [(f"{prefix}{_label(name)}", format_value(name, value))
             for name, value in reputation.items() if name not in shown]
    return rows


def _label(name: str) -> str:
    """`refund_rate_bps` → `refund rate`."""
    return name.removesuffix("_bps").replace("_", " ")


def shop_view(shop: dict[str, Any]) -> str:
    """One shop with its terms, reputation and stats."""
    rows: list[tuple[str, Any]] = [
        ("shop id", shop.get("id")),
        ("name", shop.get("name")),
        ("owner", shop.get("owner")),
        ("open", "yes" if shop.get("open") else "no (closed)"),
        ("description", shop.get("description") or "-"),
        ("points earned", format_bps(shop.get("points_bps"))),
        ("max redeemable", format_bps(shop.get("max_redeem_bps"))),
        ("arbiters", ", ".join(shop.get("arbiters") or []) or "none: no disputes, unconditional returns"),
        ("created", f"{format_time(shop.get('created_at'))} (height {shop.get('height')})"),
    ]
    reputation = shop.get("reputation") or {}
    rows += reputation_rows(reputation)
    rows += [(_label(name), format_value(name, value)) for name, value in (shop.get("stats") or {}).items()
             if name not in reputation]
    rows += [(_label(name), shop[name]) for name in ("listing_count", "active_listing_count") if name in shop]
    return key_value_table(rows)


def shops_table(shops: list[dict[str, Any]]) -> str:
    """Shops, one a line."""
    return column_table(
        ["shop id", "name", "open", "rating", "trust", "owner"],
        [[shop.get("id"), shop.get("name"), "yes" if shop.get("open") else "no",
          _short_rating(shop.get("reputation")), (shop.get("reputation") or {}).get("trust_score", "-"),
          shop.get("owner")] for shop in shops],
    )


def _short_rating(reputation: dict[str, Any] | None) -> str:
    if not reputation or not reputation.get("rating_count"):
        return "-"
    return f"{reputation.get('avg_rating_x100', 0) / 100:.2f} ({reputation['rating_count']})"


def listing_view(listing: dict[str, Any]) -> str:
    """One listing."""
    rows: list[tuple[str, Any]] = [
        ("listing id", listing.get("id")),
        ("title", listing.get("title")),
        *([("shop", listing["shop_name"])] if listing.get("shop_name") else []),
        ("shop id", listing.get("shop_id")),
        ("price", format_amount(listing.get("price", 0)) + " per unit"),
        ("stock", listing.get("stock")),
        ("sold", listing.get("sold", 0)),
        ("active", "yes" if listing.get("active") else "no"),
        ("description", listing.get("description") or "-"),
        ("tags", ", ".join(listing.get("tags") or []) or "-"),
    ]
    if listing.get("digital"):
        rows.append(("digital", "yes: delivered on chain, sealed to the buyer (R41)"))
    if listing.get("item_listing") or listing.get("item_ids"):
        rows.append(("unique items", ", ".join(listing.get("item_ids") or []) or "-"))
        if listing.get("reserved_items"):
            rows.append(("reserved items", ", ".join(listing["reserved_items"])))
    if listing.get("metadata_hash"):
        rows.append(("metadata hash", listing["metadata_hash"]))
    rows.append(("created", f"{format_time(listing.get('created_at'))} (height {listing.get('height')})"))
    return key_value_table(rows)


def listings_table(listings: list[dict[str, Any]]) -> str:
    """Listings, one a line."""
    return column_table(
        ["listing id", "title", "shop", "price", "stock", "sold", "active", "tags"],
        [[listing.get("id"), listing_title(listing), listing.get("shop_name", "-"),
          format_short_amount(listing.get("price")), listing.get("stock"), listing.get("sold", 0),
          "yes" if listing.get("active") else "no", ",".join(listing.get("tags") or [])]
         for listing in listings],
    )


def listing_title(listing: dict[str, Any]) -> str:
    """A listing's title, marked `[digital]` when it sells digital goods (R41)."""
    return f"{listing.get('title')} [digital]" if listing.get("digital") else str(listing.get("title"))


def order_state(order: dict[str, Any]) -> str:
    """An order's state, marked `(digital)` for an order of digital goods (R41)."""
    return f"{order.get('state')} (digital)" if order.get("digital") else str(order.get("state"))


def delivery_text(order: dict[str, Any]) -> str:
    """What a digital order's delivery shows without a key: its size, never its content (R41)."""
    delivery = order.get("delivery")
    if delivery:
        return f"delivered (sealed to the buyer, {len(delivery) // 2} bytes)"
    return "not delivered yet"


def orders_table(orders: list[dict[str, Any]]) -> str:
    """Orders, one a line."""
    return column_table(
        ["order id", "state", "qty", "total", "escrow", "deadline", "buyer"],
        [[order.get("id"), order_state(order), order.get("quantity"), format_short_amount(order.get("total_price")),
          format_short_amount(order.get("escrow")), format_time(order.get("deadline")), order.get("buyer")]
         for order in orders],
    )


HISTORY_SKIPPED = ("event", "state", "time", "height", "tx")


def history_table(entries: list[dict[str, Any]], first: str = "event") -> str:
    """An order's or item's history: when, what, which transaction, details."""
    rows = []
    for entry in entries:
        details = ", ".join(f"{name}={format_value(name, value)}" for name, value in entry.items()
                            if name not in HISTORY_SKIPPED and name != first)
        what = entry.get(first, "-") + (f" → {entry['state']}" if first == "event" and "state" in entry else "")
        rows.append([format_time(entry.get("time")), entry.get("height", "-"), what, entry.get("tx", "-"),
                     details or "-"])
    return column_table(["time", "height", first, "tx", "details"], rows)


def order_view(order: dict[str, Any]) -> str:
    """One order: parties, money, logistics, deadline, history and review."""
    rows: list[tuple[str, Any]] = [
        ("order id", order.get("id")),
        ("state", order_state(order)),
        ("buyer", order.get("buyer")),
        ("merchant", order.get("merchant")),
        ("shop id", order.get("shop_id")),
        ("listing id", order.get("listing_id")),
        ("quantity", order.get("quantity")),
        ("unit price", format_amount(order.get("unit_price", 0))),
        ("total price", format_amount(order.get("total_price", 0))),
        ("escrow", format_amount(order.get("escrow", 0))),
    ]
    for name in ("redeem_points", "refunded", "merchant_paid"):
        if order.get(name):
            rows.append((name.replace("_", " "), format_value(name, order[name])))
    if order.get("arbiter"):
        rows.append(("arbiter", order["arbiter"]))
    if order.get("carrier"):
        rows += [("carrier", order["carrier"]), ("tracking", order.get("tracking") or "-")]
    if order.get("item_ids"):
        rows.append(("items", ", ".join(order["item_ids"])))
    rows.append(("deadline", format_time(order.get("deadline")) if order.get("deadline") else "- (final)"))
    if order.get("digital"):
        rows.append(("delivery", delivery_text(order)))
    rows.append(("shipping", f"sealed to the merchant, {len(order.get('shipping') or '') // 2} bytes"))
    if order.get("shipping_for_carrier"):
        rows.append(("shipping for carrier", f"sealed to the carrier, {len(order['shipping_for_carrier']) // 2} bytes"))
    review = order.get("review")
    if review:
        rows.append(("review", f"{stars(review.get('rating'))}  {review.get('text', '')}".rstrip()))
        if review.get("reply"):
            rows.append(("merchant reply", review["reply"].get("text", "")))
    text = key_value_table(rows)
    if order.get("history"):
        text += "\n\nhistory\n" + history_table(order["history"])
    return text


def item_view(item: dict[str, Any]) -> str:
    """One unique item with its provenance history."""
    rows: list[tuple[str, Any]] = [
        ("item id", item.get("id")),
        ("description", item.get("description")),
        ("owner", item.get("owner")),
        ("custodian", item.get("custodian")),
        ("producer", item.get("producer")),
        ("registered", format_time(item.get("registered_at"))),
    ]
    for name in ("metadata_hash", "listing_id", "order_id"):
        if item.get(name):
            rows.append((name.replace("_", " "), item[name]))
    text = key_value_table(rows)
    if item.get("history"):
        text += "\n\nprovenance\n" + history_table(item["history"], first="kind")
    return text


def reviews_view(reviews: list[dict[str, Any]]) -> str:
    """Reviews with the merchant's replies."""
    if not reviews:
        return "no reviews yet"
    blocks = []
    for review in reviews:
        lines = [f"{stars(review.get('rating'))}  by {review.get('buyer', '-')}  {format_time(review.get('time'))}",
                 f"  order {review.get('order_id', '-')}"]
        if review.get("text"):
            lines.append(f"  “{review['text']}”")
        reply = review.get("reply")
        if reply:
            reply_text = reply.get("text", "") if isinstance(reply, dict) else str(reply)
            lines.append(f"  merchant replied: “{reply_text}”")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def account_txs_table(txs: list[dict[str, Any]], address: str | None = None) -> str:
    """Transactions an account takes part in, one a line: `sent` by it, or `involved` (buyer, carrier …)."""
    return column_table(
        ["height", "index", "type", "result", "account", "hash"],
        [[tx.get("height"), tx.get("index"), tx.get("type"),
          "ok" if tx.get("ok", True) else f"failed: {tx.get('code', '?')}",
          "sent" if tx.get("sender") == address else "involved", tx.get("hash")]
         for tx in txs],
    )
