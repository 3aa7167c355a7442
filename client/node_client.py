"""A small synchronous HTTP client of the node API, for the CLI and scripts."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

DEFAULT_NODE_URL = "http://127.0.0.1:26657"
"""Where the CLI looks for a node when neither `--node` nor `MARKETCHAIN_NODE` says."""


MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The largest answer a `NodeClient` reads (a block is at most about 4 MiB): a hostile node
cannot make the client buffer more; a longer body is the error `response_too_large`."""

RESEND_AFTER_SECONDS = 2.0
"""How long `wait_for_tx(resend=...)` lets a transaction stay unknown to the node before sending it again."""


class ClientError(Exception):
    """A request that failed: the node's error code and message, or why it is unreachable."""

    def __init__(self, code: str, message: str, status: int | None = None, node: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        """The node's error code, or `unreachable`/`timeout`."""
        self.message = message
        """What went wrong."""
        self.status = status
        """The HTTP status, if the node answered."""
        self.node = node
        """The base URL of the node that answered (or did not)."""


class NodeClient:
    """Talks to one node's HTTP API."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        """The node's base URL, e.g. http://127.0.0.1:26657."""
        self.timeout = timeout
        """Seconds to wait for one response."""
        self.max_response_bytes = MAX_RESPONSE_BYTES
        """Longest response body read; a longer one raises `ClientError("response_too_large")`."""

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        try:
            request = urllib.request.Request(self.base_url + path, data=body, method=method)
        except ValueError as error:
            raise ClientError("bad_url", f"{self.base_url!r} is not a node URL (e.g. http://127.0.0.1:26657): {error}") from None
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read(self.max_response_bytes + 1)
                if len(data) > self.max_response_bytes:
                    raise ClientError("response_too_large", f"{self.base_url} answered more than "
                                      f"{self.max_response_bytes} bytes to {method} {path}", None, self.base_url)
                if response.headers.get_content_type() == "application/json":
                    return json.loads(data)
                return data
        except urllib.error.HTTPError as error:
            raw = error.read(self.max_response_bytes + 1)
            try:
                detail = json.loads(raw)["error"]
                raise ClientError(detail["code"], detail["message"], error.code, self.base_url) from None
            except (ValueError, KeyError, TypeError):
                raise ClientError("http_error", f"HTTP {error.code} from {self.base_url}", error.code,
                                  self.base_url) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError("unreachable", f"cannot reach the node at {self.base_url}: {reason}",
                              node=self.base_url) from None

    def get(self, path: str) -> Any:
        """GET a JSON resource."""
        return self._request("GET", path)

    def status(self) -> dict[str, Any]:
        """`GET /status`."""
        return self.get("/status")

    def account(self, address: bytes) -> dict[str, Any]:
        """`GET /accounts/{address}`."""
        return self.get(f"/accounts/{address.hex()}")

    def _list(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        given = {name: value for name, value in query.items() if value is not None and value != ""}
        return self.get(path + ("?" + urllib.parse.urlencode(given) if given else ""))

    def account_txs(self, address: bytes, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """`GET /accounts/{address}/txs`: `{"txs": [...], "next"}`."""
        return self._list(f"/accounts/{address.hex()}/txs", {"limit": limit, "cursor": cursor})

    def shops(self, owner: bytes | None = None, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """`GET /shops?owner=`: `{"shops": [...], "next"}`."""
        return self._list("/shops", {"owner": owner.hex() if owner else None, "limit": limit, "cursor": cursor})

    def shop(self, shop_id: bytes) -> dict[str, Any]:
        """`GET /shops/{id}`: the shop with its reputation and stats."""
        return self.get(f"/shops/{shop_id.hex()}")

    def shop_reviews(self, shop_id: bytes, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """`GET /shops/{id}/reviews`: `{"reviews": [...], "next"}`."""
        return self._list(f"/shops/{shop_id.hex()}/reviews", {"limit": limit, "cursor": cursor})

    def listings(self, q: str | None = None, tag: str | None = None, shop: bytes | None = None,
                 min_price: int | None = None, max_price: int | None = None, limit: int | None = None,
                 cursor: str | None = None) -> dict[str, Any]:
        """`GET /listings?q=&tag=&shop=&min_price=&max_price=`: `{"listings": [...], "next"}`."""
        return self._list("/listings", {"q": q, "tag": tag, "shop": shop.hex() if shop else None,
                                        "min_price": min_price, "max_price": max_price, "limit": limit,
                                        "cursor": cursor})

    def listing(self, listing_id: bytes) -> dict[str, Any]:
        """`GET /listings/{id}`."""
        return self.get(f"/listings/{listing_id.hex()}")

    def orders(self, buyer: bytes | None = None, merchant: bytes | None = None, state: str | None = None,
               limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """`GET /orders?buyer=&merchant=&state=`: `{"orders": [...], "next"}`."""
        return self._list("/orders", {"buyer": buyer.hex() if buyer else None,
                                      "merchant": merchant.hex() if merchant else None, "state": state,
                                      "limit": limit, "cursor": cursor})

    def order(self, order_id: bytes) -> dict[str, Any]:
        """`GET /orders/{id}`: the order with its escrow, deadline and history."""
        return self.get(f"/orders/{order_id.hex()}")

    def item(self, item_id: str) -> dict[str, Any]:
        """`GET /items/{id}`: owner, custodian and provenance history."""
        return self.get(f"/items/{urllib.parse.quote(item_id, safe='')}")

    def submit(self, raw: bytes) -> str:
        """`POST /txs` with canonical bytes; returns the hash."""
        return self._request("POST", "/txs", raw, "application/msgpack")["hash"]

    def submit_batch(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """`POST /txs/batch` as JSON hex."""
        body = json.dumps({"txs": [raw.hex() for raw in raws]}).encode()
        return self._request("POST", "/txs/batch", body, "application/json")["results"]

    def tx(self, tx_hash: str) -> dict[str, Any]:
        """`GET /txs/{hash}`."""
        return self.get(f"/txs/{tx_hash}")

    def wait_for_tx(self, tx_hash: str, timeout: float = 60.0,
                    on_poll: Callable[[str, float], None] | None = None,
                    resend: bytes | None = None) -> dict[str, Any]:
        """Poll until the transaction is final; raise `ClientError("timeout")` after `timeout` s.

        `on_poll(status, elapsed_seconds)` is told after each look (`pending`, `not_found`,
        `unreachable`). With `resend` (the transaction's signed bytes), a transaction the node
        does not know (its mempool was lost, e.g. by a restart) is submitted again every
        `RESEND_AFTER_SECONDS`, and an unreachable node is waited for rather than an error:
        nothing accepted is lost while the client waits.
        """
        started = time.monotonic()
        deadline = started + timeout
        delay = 0.05
        last_sent = started
        while True:
            try:
                view = self.tx(tx_hash)
                if view.get("status") == "committed":
                    return view
                status = str(view.get("status", "pending"))
            except ClientError as error:
                if error.code not in ("not_found", "unreachable") or (error.code == "unreachable" and resend is None):
                    raise
                status = error.code
            if status == "not_found" and resend is not None and time.monotonic() - last_sent >= RESEND_AFTER_SECONDS:
                last_sent = time.monotonic()
                try:
                    self.submit(resend)
                    status = "sent again"
                except ClientError:
                    pass  # unreachable, duplicate or stale nonce: look again
            if on_poll is not None:
                on_poll(status, time.monotonic() - started)
            if time.monotonic() > deadline:
                raise ClientError("timeout", f"transaction {tx_hash} was not final after {timeout:.0f} s",
                                  node=self.base_url)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
