"""Connections of the HTTP API from the moment they are accepted: a cap per client address
and a deadline for the first request's headers (slowloris; docs/security.md).

aiohttp counts nothing before a request is parsed, and closes a connection that never
completes one only after its keep-alive timeout (75 s). `ConnectionGuard` hooks the
server's `connection_made`/`connection_lost` (the web server calls them for every
accepted socket) and:

- counts open connections per client address (`clients.client_key`: the IPv4 address or
  the IPv6 /64); one more than `[http] max_connections_per_ip` is answered at once with
  429 `rate_limited` (`Retry-After: 1`) and closed, before it can send anything;
- closes, with 408 `request_timeout`, a connection whose first request has not been
  parsed `[http] header_timeout_s` seconds after it was accepted (a client sending its
  headers a byte at a time, or nothing). A sweep every `SWEEP_INTERVAL_S` checks.

Bodies have their own deadline (`[http] body_timeout_s`, read in node/http/app.py), answers
theirs (`[http] write_timeout_s`, node/http/limits.py `send_within`), and a kept-alive
connection between requests the keep-alive timeout of node/http/server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.config import HttpConfig
from node.http.clients import client_key

SWEEP_INTERVAL_S = 1.0
"""How often connections still waiting for their first request are checked."""


def raw_error(status: int, reason: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 error answer with the JSON error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n")
    if retry_after is not None:
        head += f"Retry-After: {retry_after}\r\n"
    return head.encode() + b"\r\n" + body


@dataclass
class _Connection:
    client: str
    accepted_at: float
    transport: Any
    served: bool = False


class ConnectionGuard:
    """Per-address connection counts and the first-request deadline of one HTTP server."""

    def __init__(self, config: HttpConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_per_client = config.max_connections_per_ip
        """Most open connections of one client address."""
        self.header_timeout_s = config.header_timeout_s
        """Seconds a connection has to deliver its first request's headers."""
        self.refused = 0
        """Connections refused for their address's count."""
        self.timed_out = 0
        """Connections closed for not sending a request in time."""
        self._clock = clock
        self._connections: dict[Any, _Connection] = {}
        self._per_client: Counter[str] = Counter()
        self._sweeper: asyncio.Task[None] | None = None

    def open_connections(self, client: str) -> int:
        """Connections of `client` (a `client_key`) open now."""
        return self._per_client[client]

    def accepted(self, protocol: Any, transport: Any) -> bool:
        """Count a new connection; False (and it is answered 429 and closed) beyond the cap."""
        peer = transport.get_extra_info("peername")
        client = client_key(peer[0] if isinstance(peer, tuple) and peer else None)
        if self._per_client[client] >= self.max_per_client:
            self.refused += 1
            transport.write(raw_error(
                429, "Too Many Requests", "rate_limited",
                f"this address already holds {self.max_per_client} connections; close one or retry later", 1))
            transport.close()
            return False
        self._connections[protocol] = _Connection(client, self._clock(), transport)
        self._per_client[client] += 1
        return True

    def closed(self, protocol: Any) -> None:
        """Forget a connection that closed."""
        connection = self._connections.pop(protocol, None)
        if connection is not None:
            self._per_client[connection.client] -= 1
            if self._per_client[connection.client] <= 0:
                del self._per_client[connection.client]

    def request_started(self, protocol: Any) -> None:
        """A request of this connection was parsed: the header deadline no longer applies."""
        connection = self._connections.get(protocol)
        if connection is not None:
            connection.served = True

    def sweep(self) -> int:
        """Close (408) the connections still without a first request after the deadline; how many."""
        now = self._clock()
        late = [(protocol, connection) for protocol, connection in self._connections.items()
                if not connection.served and now - connection.accepted_at >= self.header_timeout_s]
        for protocol, connection in late:
            self.timed_out += 1
            transport = connection.transport
            if not transport.is_closing():
                transport.write(raw_error(
                    408, "Request Timeout", "request_timeout",
                    f"no complete request headers within {self.header_timeout_s} s of connecting"))
                transport.close()
            self.closed(protocol)
        return len(late)

    def install(self, server: Any) -> None:
        """Hook an aiohttp `web.Server`'s per-connection callbacks and start the sweep."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: Any) -> None:
            made(handler, transport)
            self.accepted(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.closed(handler)
            lost(handler, exc)

        server.connection_made = connection_made
        server.connection_lost = connection_lost
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.sweep()

    async def stop(self) -> None:
        """Stop the sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
