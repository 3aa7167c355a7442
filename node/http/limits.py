"""Per-client limits on the HTTP API: work charged to a token bucket, and connection caps
(docs/api.md "Rate limits", docs/security.md).

- **Work per client address.** Every client address has a bucket holding up to
  `[http] burst_per_ip` request units and regaining `[http] rate_per_ip` per second. A
  plain request costs `costs.REQUEST_COST` (1 unit) in this middleware, before its
  handler runs; handlers charge the rest of their work with `charge` BEFORE doing it
  (each transaction of `POST /txs` and `/txs/batch` from its count, list rows from
  `limit`, body bytes from `Content-Length`: node/http/costs.py). A charge the bucket
  cannot pay is answered 429 `rate_limited` with a `Retry-After` header (whole seconds
  until it could) and the work is not done. A charge above the burst is accepted only
  from a full bucket and leaves it in debt, so the rate holds for every size. IPv4
  clients are keyed by address, IPv6 clients by their /64 prefix (one host usually
  holds a whole /64); an IPv4-mapped IPv6 address counts as IPv4. The address is the
  TCP peer's: `X-Forwarded-For` is not trusted, so behind a reverse proxy every client
  shares the proxy's bucket (raise the limits, or set `rate_per_ip = 0` to turn this
  limit off and let the proxy limit instead). At most `MAX_TRACKED_CLIENTS` buckets are
  kept; the least recently seen is forgotten first (a forgotten client starts again
  with a full bucket, which is what an idle client would have anyway).
- **Open connections.** At most `[http] max_connections` client connections are
  served at once (event streams included). A connection counts from its first request
  until it closes; the first request of one more connection is answered 429
  `rate_limited` and that connection is closed. Per client address, connections are
  also capped from the moment they are accepted (node/http/connections.py).
- **Slow readers.** An answer is sent here, within `[http] write_timeout_s`; a client
  that stops reading is dropped (its connection aborted) rather than holding the answer's
  bytes (`send_within`). Event streams have their own write deadline (node/http/events.py).

Every answer carries the JSON error shape of node/http/errors.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.config import HttpConfig
from node.http.clients import client_key
from node.http.connections import ConnectionGuard
from node.http.costs import REQUEST_COST
from node.http.errors import ApiError, error_response
from p2p.ratelimit import TokenBucket

MAX_TRACKED_CLIENTS = 16_384
"""Most client addresses with a bucket; the least recently seen is dropped beyond it."""

__all__ = ["LIMITS_KEY", "ClientRateLimiter", "ConnectionCap", "CostBucket", "RequestLimits", "charge",
           "client_key", "limits_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CostBucket:
    """Holds up to `capacity` units, regains `rate` per second; a charge may leave it in debt."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self._bucket = TokenBucket(rate, capacity, clock)

    @property
    def rate(self) -> float:
        """Units regained per second."""
        return self._bucket.rate

    @property
    def capacity(self) -> float:
        """Most units held: the burst allowed after a quiet period."""
        return self._bucket.capacity

    def units(self) -> float:
        """Units available now (negative while in debt)."""
        return self._bucket.tokens()

    def charge(self, cost: float, paid: float = 0.0) -> float:
        """Take `cost` and return 0, or take nothing and return the units to regain before
        the whole request (`paid` of it already taken) can be paid when sent again.

        A cost above what a full bucket holds (less `paid`) is taken from a full bucket,
        leaving it in debt."""
        missing = min(cost, self.capacity - paid) - self.units()
        if missing > 1e-9:
            return missing + paid
        self._bucket.charge(cost)
        return 0.0


class ClientRateLimiter:
    """A cost bucket per client key (`client_key`), least recently seen forgotten first."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        """Request units per second a client regains; 0 turns the limit off."""
        self.burst = burst
        """Request units a client may spend at once after a quiet period."""
        self.max_clients = max_clients
        """Most buckets kept."""
        self.refused = 0
        """Charges refused so far."""
        self._clock = clock
        self._buckets: OrderedDict[str, CostBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def charge(self, key: str, cost: float, paid: float = 0.0) -> int | None:
        """Charge `cost` units to `key`'s bucket (`paid` units of the same request already
        taken): None if paid, else whole seconds to wait before sending it again (≥ 1)."""
        if self.rate_per_s <= 0:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = CostBucket(self.rate_per_s, self.burst, self._clock)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        missing = bucket.charge(cost, paid)
        if not missing:
            return None
        self.refused += 1
        return max(1, math.ceil(missing / self.rate_per_s))

    def retry_after(self, key: str) -> int | None:
        """Charge one plain request to `key`: None if allowed, else whole seconds to wait (≥ 1)."""
        return self.charge(key, REQUEST_COST)


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


class RequestLimits:
    """The limiters of one API application (`LIMITS_KEY`)."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        """The `[http]` options."""
        self.limiter = ClientRateLimiter(config.rate_per_ip, config.burst_per_ip)
        """Work per client address."""
        self.connections = ConnectionCap(config.max_connections)
        """Connections served at once."""
        self.guard = ConnectionGuard(config)
        """Connections per address and the first-request deadline, from accept on."""


LIMITS_KEY = web.AppKey("request_limits", RequestLimits)
"""Application key of the API's `RequestLimits`."""
CHARGED = "marketchain_charged_units"
"""Request key: the units this request has paid so far (its base cost, then each `charge`)."""


def charge(request: web.Request, cost: float, work: str) -> None:
    """Charge `cost` request units of `work` to the request's client BEFORE doing it; raises
    429 `rate_limited` with `Retry-After` when its bucket cannot pay (nothing is charged then)."""
    limits = request.app.get(LIMITS_KEY)
    if limits is None or cost <= 0:
        return
    paid = request.get(CHARGED, REQUEST_COST)
    wait_s = limits.limiter.charge(client_key(request.remote), cost, paid)
    if wait_s is None:
        request[CHARGED] = paid + cost
    else:
        config = limits.config
        raise ApiError(
            429, "rate_limited",
            f"{work} costs {cost:g} request units and this address has spent its budget "
            f"({config.rate_per_ip} per second, bursts of {config.burst_per_ip}); retry in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )


def limits_middleware(limits: RequestLimits) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware charging every request its base cost (`[http] rate_per_ip`,
    `burst_per_ip`) and enforcing `max_connections`."""
    config = limits.config

    @web.middleware
    async def http_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse a request over its client's budget, or a connection over the cap (429)."""
        limits.guard.request_started(request.protocol)
        wait_s = limits.limiter.charge(client_key(request.remote), REQUEST_COST)
        if wait_s is not None:
            return _refusal(
                f"too many requests from this address: at most {config.rate_per_ip} request units per second "
                f"(bursts of {config.burst_per_ip}); retry in {wait_s} s",
                wait_s,
            )
        if not limits.connections.admit(request.protocol):
            response = _refusal(
                f"the node serves at most {config.max_connections} connections at once; retry later", 1
            )
            response.force_close()
            return response
        response = await handler(request)
        if isinstance(response, web.Response) and not response.prepared:
            await send_within(request, response, config.write_timeout_s)
        return response

    return http_limits


async def send_within(request: web.Request, response: web.Response, timeout_s: float) -> None:
    """Send `response` now; a client that has not taken it within `timeout_s` (it stopped
    reading) is dropped: its connection is aborted, which frees the answer's bytes."""
    async def send() -> None:
        await response.prepare(request)
        await response.write_eof()

    try:
        await asyncio.wait_for(send(), timeout_s)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass  # the client went away; aiohttp sees it too
