"""`GET /events?account=&order=`: server-sent events of final blocks, transaction results
and order changes (PROTOCOL §10), fed by the node's `EventHub` (node/events.py).

Each message is `id: height:sequence`, `event: block|tx|order`, `data: {json}`. A client
that reconnects with the `Last-Event-ID` header (or `?last_event_id=`) first gets the
events after that id still held by the hub; if some are no longer held, an `event: gap`
message says so. A comment line keeps idle streams open every `KEEPALIVE_S` seconds. At
most `events.MAX_SUBSCRIBERS` streams are open at once, and at most `[http]
max_event_streams_per_ip` per client address (`clients.client_key`); one more is 429
`rate_limited`. A stream whose client falls `events.QUEUE_SIZE` events behind ends with
`event: dropped`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from aiohttp import web

from marketplace_tx.rules.order_records import load_order
from marketplace_tx.rules.state import State
from node.events import (
    HISTORY_SIZE,
    ChainEvent,
    EventFilter,
    EventHub,
    SubscriberLimit,
    block_events,
    parse_event_id,
)
from node.http.clients import client_key
from node.http.errors import ApiError
from node.http.params import query_hex32, query_text
from node.http.services import SERVICES_KEY

if TYPE_CHECKING:
    from node.http.services import HttpServices

log = logging.getLogger("marketchain.events")

KEEPALIVE_S = 15.0
"""An idle stream gets a comment line this often."""
CHECK_INTERVAL_S = 1.0
"""How often an idle stream checks that its client is still connected."""
WRITE_TIMEOUT_S = 30.0
"""A client that does not take a write within this long is dropped."""
RETRY_MS = 3000
"""Reconnection delay suggested to clients (`retry:`)."""
SEED_BLOCKS = 100
"""At start, events of at most this many recent blocks are rebuilt from storage for resume."""
STREAMS_KEY = web.AppKey("event_streams_per_client", Counter[str])
"""Application key of the open event streams per client address."""


def format_event(event: ChainEvent) -> bytes:
    """One SSE message."""
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def _control(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _services(request: web.Request) -> HttpServices:
    return request.app[SERVICES_KEY]


def _last_event_id(request: web.Request) -> tuple[int, int] | None:
    text = request.headers.get("Last-Event-ID") or query_text(request, "last_event_id")
    if text is None or text.strip() == "":
        return None
    position = parse_event_id(text.strip())
    if position is None:
        raise ApiError(400, "invalid_query", "Last-Event-ID must be an event id height:sequence")
    return position


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def get_events(request: web.Request) -> web.StreamResponse:
    """`GET /events?account=&order=`: the server-sent event stream."""
    hub = _services(request).events
    event_filter = EventFilter(query_hex32(request, "account"), query_hex32(request, "order"))
    after = _last_event_id(request)
    streams, client = request.app[STREAMS_KEY], client_key(request.remote)
    most = _services(request).limits.max_event_streams_per_ip
    if streams[client] >= most:
        raise ApiError(429, "rate_limited", f"this address already holds {most} event streams; close one first")
    try:
        subscription, replay, gap = hub.subscribe(event_filter, after)
    except SubscriberLimit as error:
        raise ApiError(429, "rate_limited", str(error)) from None
    streams[client] += 1
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )

    async def send(data: bytes) -> None:
        await asyncio.wait_for(response.write(data), WRITE_TIMEOUT_S)

    try:
        await response.prepare(request)
        opening = f"retry: {RETRY_MS}\n: marketchain events\n\n".encode()
        if gap:
            oldest = hub.history[0].id if hub.history else None
            opening += _control("gap", {"last_event_id": f"{after[0]}:{after[1]}" if after else None, "oldest": oldest})
        await send(opening + b"".join(format_event(event) for event in replay))
        last_write = time.monotonic()
        while not _client_gone(request):
            events = await subscription.wait(CHECK_INTERVAL_S)
            if subscription.dropped:
                await send(_control("dropped", {"reason": "the client fell behind; reconnect with Last-Event-ID"}))
                break
            if subscription.closed:
                break
            if events:
                await send(b"".join(format_event(event) for event in events))
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= KEEPALIVE_S:
                await send(b": keep-alive\n\n")
                last_write = time.monotonic()
    except TimeoutError:  # the client stopped reading: free its connection now
        if request.transport is not None:
            request.transport.abort()
    except (ConnectionError, RuntimeError):
        pass  # the client went away; RuntimeError: the transport is already closed
    finally:
        hub.unsubscribe(subscription)
        streams[client] -= 1
        if streams[client] <= 0:
            del streams[client]
    return response


# --- the hub's start and stop ---------------------------------------------------------


def seed_events(services: HttpServices, hub: EventHub) -> None:
    """Rebuild the events of the most recent blocks from storage, so that clients can
    resume across a node restart; older events are marked as not held."""
    tip = services.store.head()
    height = tip.height if tip is not None else 0
    state = State(services.store)
    collected: list[list[ChainEvent]] = []
    count = 0
    first = height + 1
    for block_height in range(height, max(0, height - SEED_BLOCKS), -1):
        block = services.store.block(block_height) if count < HISTORY_SIZE else None
        if block is None:
            break
        transactions = [services.decode_committed(raw) for raw in block.txs]
        events = block_events(block, transactions, services.store.receipts(block_height),
                              services.store.block_events(block_height), lambda order_id: load_order(state, order_id))
        collected.append(events)
        count += len(events)
        first = block_height
    if first > 1:
        hub.start_after(first - 1)
    for events in reversed(collected):
        hub.publish(events)


def add_event_routes(app: web.Application, services: HttpServices) -> None:
    """Register `/events`, seed the hub at start-up and end every stream at shutdown."""
    app.router.add_get("/events", get_events)
    app[STREAMS_KEY] = Counter()

    async def on_startup(app: web.Application) -> None:
        try:
            seed_events(services, services.events)
        except Exception:  # resume across restarts is a convenience: never block start-up
            log.exception("could not rebuild recent events from storage")
            tip = services.store.head()
            services.events.start_after(tip.height if tip is not None else 0)

    async def on_shutdown(app: web.Application) -> None:
        services.events.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
