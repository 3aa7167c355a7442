"""Per-client rate limiting and a cap on open connections for the HTTP API (docs/security.md).

Two limits protect a node's API from one greedy or hostile client:

- **Per-IP rate.** Every client address has a token bucket holding up to
  `[http] burst_per_ip` requests and regaining `[http] rate_per_ip` per second. A
  request that finds the bucket empty is answered 429 `rate_limited` with a
  `Retry-After` header (whole seconds until a token is back) and never reaches a
  handler. IPv4 clients are keyed by address, IPv6 clients by their /64 prefix (one
  host usually holds a whole /64); an IPv4-mapped IPv6 address counts as IPv4. The
  address is the TCP peer's: `X-Forwarded-For` is not trusted, so behind a reverse proxy
  every client shares the proxy's bucket (raise the limits, or set `rate_per_ip = 0`
  to turn this limit off and let the proxy limit instead). At most `MAX_TRACKED_CLIENTS`
  buckets are kept; the least recently seen is forgotten first (a forgotten client
  starts again with a full bucket, which is what an idle client would have anyway).
- **Open connections.** At most `[http] max_connections` client connections are
  served at once (event streams included). A connection counts from its first request
  until it closes; the first request of one more connection is answered 429
  `rate_limited` and that connection is closed.

Both answers carry the JSON error shape of node/http/errors.py.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.config import HttpConfig
from node.http.errors import error_response
from p2p.ratelimit import TokenBucket

MAX_TRACKED_CLIENTS = 16_384
"""Most client addresses with a bucket; the least recently seen is dropped beyond it."""

IPV6_PREFIX_BITS = 64
"""IPv6 clients share one bucket per prefix of this many bits."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_key(remote: str | None) -> str:
    """The bucket a client address counts against: the IPv4 address, or the IPv6 /64."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_PREFIX_BITS), strict=False)
        return str(network)
    return str(address)


class ClientRateLimiter:
    """A token bucket per client key (`client_key`), least recently seen forgotten first."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        """Requests per second a client regains; 0 turns the limit off."""
        self.burst = burst
        """Requests a client may make at once after a quiet period."""
        self.max_clients = max_clients
        """Most buckets kept."""
        self.refused = 0
        """Requests refused so far."""
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def retry_after(self, key: str) -> int | None:
        """Take one token from `key`'s bucket: None if allowed, else whole seconds to wait (≥ 1)."""
        if self.rate_per_s <= 0:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst, self._clock)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.take():
            return None
        self.refused += 1
        missing = 1.0 - bucket.tokens()
        return max(1, math.ceil(missing / self.rate_per_s))


class ConnectionCap:
    """Counts the open connections that have made a request; refuses new ones beyond a cap."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        """Most connections served at once."""
        self.refused = 0
        """Connections refused so far."""
        self._open: dict[Any, None] = {}

    @staticmethod
    def _is_open(protocol: Any) -> bool:
        transport = getattr(protocol, "transport", None)
        return transport is not None and not transport.is_closing()

    def open_connections(self) -> int:
        """Connections counted now (closed ones forgotten)."""
        self._open = {protocol: None for protocol in self._open if self._is_open(protocol)}
        return len(self._open)

    def admit(self, protocol: Any) -> bool:
        """True if the connection `protocol` (aiohttp's per-connection handler) may be served."""
        if protocol is None or protocol in self._open:
            return True
        if len(self._open) >= self.max_connections and self.open_connections() >= self.max_connections:
            self.refused += 1
            return False
        self._open[protocol] = None
        return True


def _refusal(message: str, retry_after: int) -> web.Response:
    response = error_response(429, "rate_limited", message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def limits_middleware(config: HttpConfig) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware enforcing `[http] rate_per_ip`, `burst_per_ip` and `max_connections`."""
    limiter = ClientRateLimiter(config.rate_per_ip, config.burst_per_ip)
    connections = ConnectionCap(config.max_connections)

    @web.middleware
    async def http_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse a request over its client's rate, or a connection over the cap (429)."""
        wait_s = limiter.retry_after(client_key(request.remote))
        if wait_s is not None:
            return _refusal(
                f"too many requests from this address: at most {config.rate_per_ip} per second "
                f"(bursts of {config.burst_per_ip}); retry in {wait_s} s",
                wait_s,
            )
        if not connections.admit(request.protocol):
            response = _refusal(
                f"the node serves at most {config.max_connections} connections at once; retry later", 1
            )
            response.force_close()
            return response
        return await handler(request)

    return http_limits
