"""The marketplace read endpoints of the HTTP API (PROTOCOL §10): shops, reviews, shop
analytics (`/shops/{id}/stats`), listings, orders, items and account histories.

Records are read with `marketplace_tx.rules.state.State` over one LevelDB snapshot of the
node's database (`ChainStore.read_view`), lists through the secondary indexes of
node/indexer.py. Lists come as `{"<plural>": [...], "next": cursor or null}`; a
cursor is opaque. One request scans at most `indexer.SCAN_BUDGET` index entries, so a page
may hold fewer than `limit` items while `next` is not null: follow `next` until null. The
listing counts of shop views share the same budget per request (`listing_counts_complete`).
A list charges its client `costs.ROW_COST` per row of its `limit` before it is read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from marketplace_tx.primitives import codec
from marketplace_tx.rules.accounts import has_role
from marketplace_tx.rules.items import item_history, load_item
from marketplace_tx.rules.listings import Listing, load_listing
from marketplace_tx.rules.order_records import DEADLINE_FIELDS, ORDER_STATES, Order, load_order
from marketplace_tx.rules.points import points_of_account
from marketplace_tx.rules.reputation import Reputation, merchant_reputation, shop_reputation
from marketplace_tx.rules.shops import Shop, load_shop
from marketplace_tx.rules.state import State
from node import indexer
from node.http.costs import rows_cost
from node.http.errors import ApiError, found
from node.http.json_view import to_json
from node.http.limits import charge
from node.http.params import (
    DEFAULT_STATS_DAYS,
    MAX_QUERY_BYTES,
    MAX_QUERY_WORDS,
    MAX_STATS_DAYS,
    MAX_TAG_BYTES,
    UINT64_MAX,
    page_cursor,
    page_limit,
    path_hex32,
    path_item_id,
    query_boolean,
    query_choice,
    query_hex32,
    query_integer,
    query_string,
)
from node.http.services import SERVICES_KEY

if TYPE_CHECKING:
    from node.http.services import HttpServices
    from node.storage import ReadView

MAX_STATS_ORDERS = 10_000
"""Most orders one `/shops/{id}/stats` request reads; beyond, the series says `complete: false`."""
DAY_MS = 86_400_000
STATS_ROWS_CHARGED = 100
"""`/shops/{id}/stats` is charged as a list of this many rows (it reads at most `MAX_STATS_ORDERS`)."""


# --- views --------------------------------------------------------------------------


def record_json(record: Any) -> dict[str, Any]:
    """Every field of a record dataclass as JSON (bytes as hex, unset fields null)."""
    return {item.name: to_json(getattr(record, item.name)) for item in dataclasses.fields(record)}


def shop_stats(reputation: Reputation) -> dict[str, int]:
    """Sales figures of a shop; rates are over orders that ended with an outcome (docs/api.md)."""
    disputes = reputation.disputes_won + reputation.disputes_lost
    ended = reputation.orders_completed + reputation.orders_refunded + reputation.orders_expired + disputes
    return {
        "orders_placed": reputation.orders_placed,
        "orders_completed": reputation.orders_completed,
        "units_sold": reputation.units_sold,
        "revenue": reputation.revenue,
        "orders_refunded": reputation.orders_refunded,
        "refund_rate_bps": reputation.orders_refunded * 10000 // ended if ended else 0,
        "dispute_rate_bps": disputes * 10000 // ended if ended else 0,
    }


def shop_view(view: ReadView, state: State, shop_id: bytes, shop: Shop,
              budget: int = indexer.SCAN_BUDGET) -> dict[str, Any]:
    """A shop with its reputation, stats and listing counts; the counts look at no more than
    `budget` index entries (`listing_counts_complete` false when they stopped there)."""
    reputation = shop_reputation(state, shop_id)
    counts = indexer.count_listings(view, shop_id, budget)
    return {
        "id": shop_id.hex(),
        **record_json(shop),
        "reputation": dataclasses.asdict(reputation),
        "stats": shop_stats(reputation),
        "listing_count": counts.listings,
        "active_listing_count": counts.active,
        "listing_counts_complete": counts.complete,
    }


def listing_view(state: State, listing_id: bytes, listing: Listing, shop_names: dict[bytes, str | None]) -> dict[str, Any]:
    """A listing with the name of its shop."""
    if listing.shop_id not in shop_names:
        shop = load_shop(state, listing.shop_id)
        shop_names[listing.shop_id] = shop.name if shop else None
    return {"id": listing_id.hex(), **record_json(listing), "digital": bool(listing.digital),
            "shop_name": shop_names[listing.shop_id]}


def review_view(order_id: bytes, buyer: bytes, review: dict[str, Any]) -> dict[str, Any]:
    """`{order_id, buyer, rating, text?, time, height, reply?}`."""
    result: dict[str, Any] = {"order_id": order_id.hex(), "buyer": buyer.hex()}
    for name in ("rating", "text", "time", "height"):
        if name in review:
            result[name] = review[name]
    if "reply" in review:
        result["reply"] = {name: review["reply"][name] for name in ("text", "time", "height")}
    return result


def account_marketplace_view(state: State, view: ReadView, address: bytes) -> dict[str, Any]:
    """`points` per shop, and `reputation` if the address owns a shop or holds `merchant`."""
    points = {shop_id.hex(): amount for shop_id, amount in points_of_account(state, address).items()}
    owns_shop = next(indexer.index_entries(view, indexer.SHOPS_BY_OWNER + address, None, False), None) is not None
    is_merchant = owns_shop or has_role(state, address, "merchant")
    reputation = dataclasses.asdict(merchant_reputation(state, address)) if is_merchant else None
    return {"points": points, "reputation": reputation}


# --- handlers -----------------------------------------------------------------------


def _services(request: web.Request) -> HttpServices:
    return request.app[SERVICES_KEY]


async def list_shops(request: web.Request) -> web.Response:
    """`GET /shops?owner=&limit=&cursor=`: oldest first."""
    owner = query_hex32(request, "owner")
    limit, cursor = page_limit(request), page_cursor(request)
    charge(request, rows_cost(limit), f"a page of {limit} shops")
    prefix = indexer.SHOPS if owner is None else indexer.SHOPS_BY_OWNER + owner
    counting_budget = [indexer.SCAN_BUDGET]  # shared by the listing counts of the whole page
    with _services(request).store.read_view() as view:
        state = State(view)

        def accept(shop_id: bytes, position: bytes) -> dict[str, Any] | None:
            shop = load_shop(state, shop_id)
            if shop is None:
                return None
            item = shop_view(view, state, shop_id, shop, counting_budget[0])
            counting_budget[0] -= item["listing_count"]
            return item

        shops, next_cursor = indexer.scan_page(view, prefix, cursor, limit, accept, newest_first=False)
    return web.json_response({"shops": shops, "next": next_cursor})


async def get_shop(request: web.Request) -> web.Response:
    """`GET /shops/{id}`."""
    shop_id = path_hex32(request, "id")
    with _services(request).store.read_view() as view:
        state = State(view)
        shop = found(load_shop(state, shop_id), f"shop {shop_id.hex()}")
        return web.json_response(shop_view(view, state, shop_id, shop))


async def list_reviews(request: web.Request) -> web.Response:
    """`GET /shops/{id}/reviews?limit=&cursor=`: newest first."""
    shop_id = path_hex32(request, "id")
    limit, cursor = page_limit(request), page_cursor(request)
    charge(request, rows_cost(limit), f"a page of {limit} reviews")
    with _services(request).store.read_view() as view:
        state = State(view)
        found(load_shop(state, shop_id), f"shop {shop_id.hex()}")

        def accept(order_id: bytes, position: bytes) -> dict[str, Any] | None:
            order = load_order(state, order_id)
            if order is None or order.review is None:
                return None
            return review_view(order_id, order.buyer, order.review)

        reviews, next_cursor = indexer.scan_page(view, indexer.REVIEWS_BY_SHOP + shop_id, cursor, limit, accept)
    return web.json_response({"reviews": reviews, "next": next_cursor})


def _order_day_figures(order: Order) -> list[tuple[int, str, int]]:
    """(time, figure, amount) of everything an order adds to a shop's daily series."""
    figures = [(order.placed_at, "orders_placed", 1)]
    if order.ended_at is not None:
        if order.state == "completed":
            figures.append((order.ended_at, "orders_completed", 1))
        if order.state == "refunded":
            figures.append((order.ended_at, "orders_refunded", 1))
        if order.merchant_paid:
            figures.append((order.ended_at, "revenue", order.merchant_paid))
    by_merchant = 0
    for entry in order.history:
        if entry.get("event") == "order_refund":
            by_merchant += entry["amount"]
            figures.append((entry["time"], "refunds", entry["amount"]))
        elif entry.get("event") == "dispute_resolve" and entry.get("buyer_amount"):
            figures.append((entry["time"], "refunds", entry["buyer_amount"]))
    if order.state == "refunded" and order.ended_at is not None and order.refunded > by_merchant:
        figures.append((order.ended_at, "refunds", order.refunded - by_merchant))  # refunded by deadline (R15)
    return figures


def shop_daily_series(view: ReadView, shop_id: bytes, first_day_ms: int, days: int, longest_order_ms: int) -> tuple[list[dict[str, Any]], bool]:
    """A shop's figures per UTC day from `first_day_ms` (midnight), oldest first, and whether
    every order was read. Orders are scanned newest first and the scan stops at orders placed
    so long ago (`longest_order_ms`, the sum of the R15 windows) that they ended before the window."""
    state = State(view)
    names = ("orders_placed", "orders_completed", "revenue", "refunds", "orders_refunded")
    series = [dict.fromkeys(names, 0) for _ in range(days)]
    scanned = 0
    for _, value in indexer.index_entries(view, indexer.ORDERS_BY_SHOP + shop_id, None, newest_first=True):
        if scanned >= MAX_STATS_ORDERS:
            return _dated(series, first_day_ms), False
        scanned += 1
        order = load_order(state, indexer.decode_order_entry(value).order_id)
        if order is None:
            continue
        if order.placed_at + longest_order_ms < first_day_ms:
            break
        for at, name, amount in _order_day_figures(order):
            day = (at - first_day_ms) // DAY_MS
            if 0 <= day < days:
                series[day][name] += amount
    return _dated(series, first_day_ms), True


def _dated(series: list[dict[str, int]], first_day_ms: int) -> list[dict[str, Any]]:
    start = datetime.fromtimestamp(first_day_ms / 1000, UTC).date()
    return [{"day": (start + timedelta(days=offset)).isoformat(), **figures} for offset, figures in enumerate(series)]


async def get_shop_stats(request: web.Request) -> web.Response:
    """`GET /shops/{id}/stats?days=`: the shop's stats and a daily series of the last `days` UTC days."""
    services = _services(request)
    shop_id = path_hex32(request, "id")
    days = query_integer(request, "days", DEFAULT_STATS_DAYS, 1, MAX_STATS_DAYS)
    charge(request, rows_cost(STATS_ROWS_CHARGED), "shop analytics")
    today_ms = int(time.time() * 1000) // DAY_MS * DAY_MS
    first_day_ms = today_ms - (days - 1) * DAY_MS
    params = services.genesis.params
    longest_order_ms = sum(getattr(params, window) for _, window in DEADLINE_FIELDS.values())

    def read() -> dict[str, Any]:
        with services.store.read_view() as view:
            state = State(view)
            found(load_shop(state, shop_id), f"shop {shop_id.hex()}")
            stats = shop_stats(shop_reputation(state, shop_id))
            daily, complete = shop_daily_series(view, shop_id, first_day_ms, days, longest_order_ms)
        window = {name: sum(day[name] for day in daily) for name in daily[0] if name != "day"}
        return {"id": shop_id.hex(), "days": days, "from": daily[0]["day"], "to": daily[-1]["day"],
                "stats": stats, "window": window, "daily": daily, "complete": complete}

    return web.json_response(await asyncio.to_thread(read))


def _listing_prefix(query_words: list[str], tag: str | None, shop: bytes | None) -> bytes:
    if query_words:
        return indexer.word_prefix(max(query_words, key=len))
    if tag is not None:
        return indexer.tag_prefix(tag)
    if shop is not None:
        return indexer.LISTINGS_BY_SHOP + shop
    return indexer.LISTINGS


async def list_listings(request: web.Request) -> web.Response:
    """`GET /listings?q=&tag=&shop=&min_price=&max_price=&active=&limit=&cursor=`: newest first."""
    q = query_string(request, "q", MAX_QUERY_BYTES)
    query_words = sorted(set(indexer.words(q))) if q else []
    if q and not query_words:
        raise ApiError(400, "invalid_query", "q must hold at least one letter or digit")
    if len(query_words) > MAX_QUERY_WORDS:
        raise ApiError(400, "invalid_query", f"q may hold at most {MAX_QUERY_WORDS} words")
    tag = query_string(request, "tag", MAX_TAG_BYTES)
    shop = query_hex32(request, "shop")
    min_price = query_integer(request, "min_price", 0, 0, UINT64_MAX)
    max_price = query_integer(request, "max_price", UINT64_MAX, 0, UINT64_MAX)
    if min_price > max_price:
        raise ApiError(400, "invalid_query", "min_price must not exceed max_price")
    active = query_boolean(request, "active")
    limit, cursor = page_limit(request), page_cursor(request)
    charge(request, rows_cost(limit), f"a page of {limit} listings")
    shop_names: dict[bytes, str | None] = {}
    with _services(request).store.read_view() as view:
        state = State(view)

        def accept(value: bytes, position: bytes) -> dict[str, Any] | None:
            entry = indexer.decode_listing_entry(value)
            if shop is not None and entry.shop_id != shop:
                return None
            if not min_price <= entry.price <= max_price or active not in (None, entry.active):
                return None
            listing = load_listing(state, entry.listing_id)
            if listing is None:
                return None
            if query_words and not set(query_words) <= indexer.listing_words(listing):
                return None
            if tag is not None and tag.lower() not in {item.lower() for item in listing.tags}:
                return None
            return listing_view(state, entry.listing_id, listing, shop_names)

        prefix = _listing_prefix(query_words, tag, shop)
        listings, next_cursor = indexer.scan_page(view, prefix, cursor, limit, accept)
    return web.json_response({"listings": listings, "next": next_cursor})


async def get_listing(request: web.Request) -> web.Response:
    """`GET /listings/{id}`."""
    listing_id = path_hex32(request, "id")
    with _services(request).store.read_view() as view:
        state = State(view)
        listing = found(load_listing(state, listing_id), f"listing {listing_id.hex()}")
        return web.json_response(listing_view(state, listing_id, listing, {}))


def _order_json(services: HttpServices, order_id: bytes, order: Any) -> dict[str, Any]:
    result = {"id": order_id.hex(), **record_json(order), "digital": bool(order.digital)}
    window = services.genesis.params.review_window_ms
    result["review_deadline"] = order.ended_at + window if order.ended_at is not None else None
    return result


async def get_order(request: web.Request) -> web.Response:
    """`GET /orders/{id}`: state, escrow, deadlines and the full history."""
    services = _services(request)
    order_id = path_hex32(request, "id")
    with services.store.read_view() as view:
        order = found(load_order(State(view), order_id), f"order {order_id.hex()}")
    return web.json_response(_order_json(services, order_id, order))


async def list_orders(request: web.Request) -> web.Response:
    """`GET /orders?buyer=&merchant=&state=&shop=&limit=&cursor=`: newest first."""
    services = _services(request)
    buyer = query_hex32(request, "buyer")
    merchant = query_hex32(request, "merchant")
    shop = query_hex32(request, "shop")
    wanted_state = query_choice(request, "state", ORDER_STATES)
    limit, cursor = page_limit(request), page_cursor(request)
    charge(request, rows_cost(limit), f"a page of {limit} orders")
    if buyer is not None:
        prefix = indexer.ORDERS_BY_BUYER + buyer
    elif merchant is not None:
        prefix = indexer.ORDERS_BY_MERCHANT + merchant
    elif shop is not None:
        prefix = indexer.ORDERS_BY_SHOP + shop
    elif wanted_state is not None:
        prefix = indexer.state_prefix(wanted_state)
    else:
        prefix = indexer.ORDERS
    with services.store.read_view() as view:
        state = State(view)

        def accept(value: bytes, position: bytes) -> dict[str, Any] | None:
            entry = indexer.decode_order_entry(value)
            wanted = ((buyer, entry.buyer), (merchant, entry.merchant), (shop, entry.shop_id), (wanted_state, entry.state))
            if any(expected is not None and expected != actual for expected, actual in wanted):
                return None
            order = load_order(state, entry.order_id)
            return None if order is None else _order_json(services, entry.order_id, order)

        orders, next_cursor = indexer.scan_page(view, prefix, cursor, limit, accept)
    return web.json_response({"orders": orders, "next": next_cursor})


async def get_item(request: web.Request) -> web.Response:
    """`GET /items/{id}`: owner, custodian and the full history."""
    item_id = path_item_id(request)
    with _services(request).store.read_view() as view:
        state = State(view)
        item = found(load_item(state, item_id), f"item {item_id}")
        history = to_json(item_history(state, item_id))
    return web.json_response({"id": item_id, **record_json(item), "history": history})


async def list_account_txs(request: web.Request) -> web.Response:
    """`GET /accounts/{address}/txs?limit=&cursor=`: newest first. On a node that lacks old
    blocks (R40) the history holds the kept blocks' transactions only: its last page says
    `"pruned_below": oldest kept height`."""
    address = path_hex32(request, "address")
    limit, cursor = page_limit(request), page_cursor(request)
    charge(request, rows_cost(limit), f"a page of {limit} transactions")
    store = _services(request).store
    oldest = store.oldest_block_height()

    def accept(value: bytes, position: bytes) -> dict[str, Any] | None:
        height, index = indexer.decode_position(position)
        if height < oldest:  # being pruned right now
            return None
        return {**to_json(codec.decode(value)), "height": height, "index": index}

    with store.read_view() as view:
        txs, next_cursor = indexer.scan_page(view, indexer.ACCOUNT_TXS + address, cursor, limit, accept)
    body: dict[str, Any] = {"txs": txs, "next": next_cursor}
    if next_cursor is None and oldest > 1:
        body["pruned_below"] = oldest
    return web.json_response(body)


def add_marketplace_routes(app: web.Application) -> None:
    """Register the marketplace read endpoints on the API application (handlers read
    `app[SERVICES_KEY]`, which `build_app` sets)."""
    app.router.add_get("/shops", list_shops)
    app.router.add_get("/shops/{id}", get_shop)
    app.router.add_get("/shops/{id}/reviews", list_reviews)
    app.router.add_get("/shops/{id}/stats", get_shop_stats)
    app.router.add_get("/listings", list_listings)
    app.router.add_get("/listings/{id}", get_listing)
    app.router.add_get("/orders", list_orders)
    app.router.add_get("/orders/{id}", get_order)
    app.router.add_get("/items/{id}", get_item)
    app.router.add_get("/accounts/{address}/txs", list_account_txs)
