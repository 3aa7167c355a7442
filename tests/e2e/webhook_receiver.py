"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1, an ephemeral port, that
checks every signature, dedupes by event id like a careful merchant's system, and
misbehaves on purpose (answers 500, drops the connection, holds the request) per a policy.

    receiver = WebhookReceiver(secret, policy=lambda number, event_id, attempt: "ok")
    url = await receiver.start()            # or receiver.start_in_thread() from sync code
    ...
    receiver.delivered                      # {event id: body} of the requests answered 2xx
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from client.merchant.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify_signature

Policy = Callable[[int, str, int], str]
"""(request number from 1, event id, attempt of that id from 1) -> `ok`, `fail` (500), `drop`
(connection closed without an answer) or `hold` (wait until `release()`, then ok)."""


def always_ok(number: int, event_id: str, attempt: int) -> str:
    """The policy of a healthy receiver."""
    return "ok"


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST that reached the receiver."""

    event_id: str
    """The Marketchain-Event-Id header."""
    body: bytes
    """The raw body."""
    at: float
    """When it arrived (time.monotonic())."""
    outcome: str
    """What the policy made of it."""
    signature_ok: bool
    """Whether the signature verified (secret, body, a timestamp within 300 s)."""


class WebhookReceiver:
    """The test receiver (see the module docstring)."""

    def __init__(self, secret: bytes, policy: Policy = always_ok) -> None:
        """A receiver verifying signatures with `secret` and answering per `policy`."""
        self.secret = secret
        """The HMAC key the sender should use."""
        self.policy = policy
        """Decides each request's fate (may be replaced at any time)."""
        self.requests: list[ReceivedRequest] = []
        """Every POST, in arrival order."""
        self.delivered: dict[str, bytes] = {}
        """Bodies of the first 2xx answer per event id: the receiver's dedup table."""
        self.answered_ok: Counter[str] = Counter()
        """2xx answers per event id (more than one would be a duplicate on the wire)."""
        self.in_flight = 0
        """Requests being handled now."""
        self.max_in_flight = 0
        """The most requests handled at once."""
        self.url = ""
        """The hook URL once started."""
        self._lock = threading.Lock()
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> str:
        """Serve on 127.0.0.1, an ephemeral port; the hook URL."""
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hooks"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def release(self) -> None:
        """Let held requests (and later `hold` ones) through."""
        if self._thread_loop is not None:
            self._thread_loop.call_soon_threadsafe(self._release.set)  # type: ignore[union-attr]
        elif self._release is not None:
            self._release.set()

    def start_in_thread(self) -> str:
        """Serve from a thread of its own (for synchronous tests); the hook URL."""
        started = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the webhook receiver did not start")
        return self.url

    def stop_thread(self) -> None:
        """Stop a receiver started by `start_in_thread`."""
        if self._thread_loop is not None and self._thread is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            self._thread.join(30)

    def snapshot(self) -> tuple[list[ReceivedRequest], dict[str, bytes]]:
        """Copies of `requests` and `delivered`, safe from another thread."""
        with self._lock:
            return list(self.requests), dict(self.delivered)

    def attempts_of(self, event_id: str) -> list[ReceivedRequest]:
        """The POSTs of one event id."""
        with self._lock:
            return [request for request in self.requests if request.event_id == event_id]

    def delivered_events(self) -> dict[str, dict[str, Any]]:
        """The delivered bodies, parsed."""
        with self._lock:
            return {event_id: json.loads(body) for event_id, body in self.delivered.items()}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        event_id = request.headers.get(EVENT_ID_HEADER, "")
        signature_ok = verify_signature(self.secret, body, request.headers.get(SIGNATURE_HEADER, ""),
                                        300, time.time())
        with self._lock:
            attempt = 1 + sum(1 for seen in self.requests if seen.event_id == event_id)
            outcome = self.policy(len(self.requests) + 1, event_id, attempt)
            if not signature_ok:
                outcome = "bad-signature"
            self.requests.append(ReceivedRequest(event_id, body, time.monotonic(), outcome, signature_ok))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, event_id, body, outcome)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: web.Request, event_id: str, body: bytes,
                      outcome: str) -> web.StreamResponse:
        if outcome == "drop":
            request.transport.abort()  # type: ignore[union-attr]
            raise asyncio.CancelledError
        if outcome == "hold":
            await self._release.wait()  # type: ignore[union-attr]
        elif outcome != "ok":
            return web.Response(status=500 if outcome == "fail" else 400, text=outcome)
        with self._lock:
            self.answered_ok[event_id] += 1
            self.delivered.setdefault(event_id, body)
        return web.Response(status=200, text="ok")
