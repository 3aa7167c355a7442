"""The node's event stream (`GET /events?account=`, server-sent events) read with aiohttp,
resuming after a given event id (`Last-Event-ID`). One event is parsed at a time and none is
buffered here beyond it: an event larger than `MAX_EVENT_BYTES` ends the stream as an error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from client.events import EventParser, NodeEvent

READ_TIMEOUT_S = 60.0
"""A stream silent this long is given up (the node sends a keep-alive every 15 s)."""

MAX_EVENT_BYTES = 256 * 1024
"""Largest event accepted from the node; a larger one ends the stream (a hostile or broken node)."""


class StreamError(Exception):
    """The stream could not be opened or broke off."""


async def read_events(session: aiohttp.ClientSession, base_url: str, account: bytes,
                      last_event_id: str | None) -> AsyncIterator[NodeEvent]:
    """The events of `account` after `last_event_id`, as the node sends them, until the stream ends."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=READ_TIMEOUT_S)
    try:
        async with session.get(f"{base_url}/events", params={"account": account.hex()}, headers=headers,
                               timeout=timeout) as response:
            if response.status != 200:
                raise StreamError(f"GET /events answered HTTP {response.status}: {(await response.text())[:200]}")
            parser, size = EventParser(), 0
            async for raw in response.content:
                size += len(raw)
                if size > MAX_EVENT_BYTES:
                    raise StreamError(f"the node sent an event larger than {MAX_EVENT_BYTES} bytes")
                line = raw.decode("utf-8", errors="replace")
                try:
                    event = parser.feed(line)
                except ValueError:
                    raise StreamError(f"the node sent an event that is not JSON (id {parser.event_id})") from None
                if not line.rstrip("\r\n"):
                    size = 0
                if event is not None:
                    yield event
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise StreamError(f"event stream of {base_url}: {error or type(error).__name__}") from None
