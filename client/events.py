"""Follow a node's server-sent events (`GET /events`, PROTOCOL §10) with resume: after a
dropped connection the client reconnects with the last event id it saw (`last_event_id=`),
so no final event is missed while the node still holds it (a `gap` event says otherwise).

    for event in follow_events("http://127.0.0.1:26657", account=merchant_address):
        if event.kind == "order":
            print(event.data["order_id"], event.data["to"])
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

RECONNECT_SECONDS = 1.0
"""Pause before reconnecting after the stream ended or the node was unreachable."""


@dataclass(frozen=True)
class NodeEvent:
    """One server-sent event of the node."""

    id: str | None
    """`height:sequence`, what resume starts after."""
    kind: str
    """`block`, `tx`, `order`, or a control event (`gap`, `dropped`)."""
    data: dict[str, Any]
    """The event's JSON."""


class EventParser:
    """Reads an SSE stream line by line and hands back each complete event (comments and
    `retry:` skipped): shared by the blocking `parse_stream` and the merchant agent's
    asyncio reader (client/merchant/stream.py)."""

    def __init__(self) -> None:
        """A parser between events."""
        self._reset()

    def _reset(self) -> None:
        self._event_id: str | None = None
        self._kind = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> NodeEvent | None:
        """Take one line (its end of line optional); the event it completes, if any. An event
        whose data is not JSON raises ValueError."""
        line = line.rstrip("\r\n")
        if not line:
            event = None
            if self._data:
                event = NodeEvent(self._event_id, self._kind, json.loads("\n".join(self._data)))
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._event_id = value
        elif name == "event":
            self._kind = value
        elif name == "data":
            self._data.append(value)
        return None

    @property
    def event_id(self) -> str | None:
        """The id of the event being read, once its `id:` line came."""
        return self._event_id


def parse_stream(lines: Iterator[str]) -> Iterator[NodeEvent]:
    """Events from the lines of an SSE stream (comments and `retry:` skipped); bad JSON raises ValueError."""
    parser = EventParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def follow_events(base_url: str, account: bytes | None = None, last_event_id: str | None = None,
                  reconnect: bool = True) -> Iterator[NodeEvent]:
    """Events of the node at `base_url` (only those `account` takes part in, if given), forever:
    a dropped or refused connection is retried after `RECONNECT_SECONDS`, resuming after the last id."""
    while True:
        query = {name: value for name, value in (("account", account.hex() if account else None),
                                                  ("last_event_id", last_event_id)) if value}
        url = base_url.rstrip("/") + "/events" + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                lines = (raw.decode("utf-8") for raw in response)
                for event in parse_stream(lines):
                    if event.id:
                        last_event_id = event.id
                    yield event
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if not reconnect:
                raise
        if not reconnect:
            return
        time.sleep(RECONNECT_SECONDS)
