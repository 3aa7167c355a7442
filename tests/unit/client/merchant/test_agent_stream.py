"""The agent's event stream reader (client/merchant/stream.py) against a real aiohttp server on
loopback: events are parsed with their ids, resume sends Last-Event-ID, and a hostile node's
oversized event or error answer ends the stream with StreamError rather than memory or a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from client.merchant.stream import MAX_EVENT_BYTES, StreamError, read_events

ACCOUNT = bytes([5]) * 32


async def serve(body: bytes, status: int = 200, seen: list[dict[str, str]] | None = None) -> web.AppRunner:
    async def events(request: web.Request) -> web.StreamResponse:
        if seen is not None:
            seen.append({"Last-Event-ID": request.headers.get("Last-Event-ID", ""),
                         "account": request.query.get("account", "")})
        if status != 200:
            return web.Response(status=status, text="no")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner) -> str:
    (site,) = runner.sites
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}"


async def collect(base_url: str, last_event_id: str | None = None) -> list:
    async with aiohttp.ClientSession() as session:
        return [event async for event in read_events(session, base_url, ACCOUNT, last_event_id)]


@pytest.fixture
async def cleanup() -> AsyncIterator[list[web.AppRunner]]:
    runners: list[web.AppRunner] = []
    yield runners
    for runner in runners:
        await runner.cleanup()


async def test_events_are_parsed_and_resume_sends_the_last_id(cleanup: list[web.AppRunner]) -> None:
    seen: list[dict[str, str]] = []
    body = (b"retry: 3000\n: marketchain events\n\nevent: gap\ndata: {\"oldest\": \"5:0\"}\n\n"
            b"id: 7:2\nevent: order\ndata: {\"order_id\": \"ab\", \"to\": \"placed\"}\n\n")
    runner = await serve(body, seen=seen)
    cleanup.append(runner)
    events = await collect(url_of(runner), "6:1")
    assert [(event.id, event.kind) for event in events] == [(None, "gap"), ("7:2", "order")]
    assert events[1].data == {"order_id": "ab", "to": "placed"}
    assert seen == [{"Last-Event-ID": "6:1", "account": ACCOUNT.hex()}]


async def test_an_oversized_event_ends_the_stream(cleanup: list[web.AppRunner]) -> None:
    lines = b"".join(b"data: " + b"x" * 1000 + b"\n" for _ in range(MAX_EVENT_BYTES // 1000 + 2))
    runner = await serve(b"id: 1:0\nevent: order\n" + lines + b"\n")
    cleanup.append(runner)
    with pytest.raises(StreamError, match=f"larger than {MAX_EVENT_BYTES}"):
        await collect(url_of(runner))


async def test_an_error_answer_or_bad_json_is_a_stream_error(cleanup: list[web.AppRunner]) -> None:
    refusing = await serve(b"", status=429)
    broken = await serve(b"id: 1:0\nevent: order\ndata: {not json\n\n")
    cleanup.extend([refusing, broken])
    with pytest.raises(StreamError, match="HTTP 429"):
        await collect(url_of(refusing))
    with pytest.raises(StreamError, match="not JSON"):
        await collect(url_of(broken))
    with pytest.raises(StreamError):
        await collect("http://127.0.0.1:9")  # nothing listens
