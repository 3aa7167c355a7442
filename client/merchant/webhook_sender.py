"""One signed POST of a webhook, the retry schedule, and the replay of dead letters.

A POST is delivered when the receiver answers 2xx; anything else (another status, a
redirect, which is not followed, a refused or dropped connection, no answer within
`timeout_s`) is a failure, retried by the outbox after `backoff_delay`: exponential
backoff with full jitter (a delay drawn uniformly below a ceiling that starts at
`first_backoff_s` and doubles per attempt up to `max_backoff_s`), so that many agents
failing at once do not retry in step.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from client.merchant.dead_letters import DeadLetter, read_dead_letters, remove_dead_letters
from client.merchant.webhooks import WebhookSettings, event_body, request_headers

MAX_IN_FLIGHT = 4
"""POSTs at once (the outbox's default, and the replay's)."""

MAX_DOUBLINGS = 40
"""Doublings of the backoff ceiling considered (beyond, `max_backoff_s` holds anyway)."""


def backoff_ceiling(attempts: int, settings: WebhookSettings) -> float:
    """The largest delay after the `attempts`-th failed POST of an event (1 for the first)."""
    doublings = min(max(attempts - 1, 0), MAX_DOUBLINGS)
    return min(settings.max_backoff_s, settings.first_backoff_s * 2.0 ** doublings)


def backoff_delay(attempts: int, settings: WebhookSettings, rng: random.Random) -> float:
    """The delay before the next POST after the `attempts`-th failure: full jitter below the ceiling."""
    return rng.uniform(0.0, backoff_ceiling(attempts, settings))


def new_session(settings: WebhookSettings, max_in_flight: int) -> aiohttp.ClientSession:
    """An HTTP client session for webhooks: at most `max_in_flight` connections, `timeout_s` a POST."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
        connector=aiohttp.TCPConnector(limit=max_in_flight),
    )


async def post_event(session: aiohttp.ClientSession, settings: WebhookSettings, event_id: str,
                     body: bytes) -> str | None:
    """POST `body` signed now; None if the receiver answered 2xx, else what went wrong."""
    headers = request_headers(event_id, settings.secret, body, int(time.time()))
    try:
        async with session.post(settings.url, data=body, headers=headers,
                                allow_redirects=False) as response:
            status = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        return describe_error(error)
    return None if 200 <= status < 300 else f"HTTP {status}"


def describe_error(error: BaseException) -> str:
    """A short text for a failed POST."""
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text[:200]


@dataclass(frozen=True)
class ReplayResult:
    """What replaying one dead letter gave."""

    id: str
    """The event's id."""
    delivered: bool
    """Whether the receiver answered 2xx."""
    detail: str
    """`delivered`, the failure (`HTTP 500`, ...), or `not found`."""


async def replay_dead_letters(settings: WebhookSettings, directory: Path,
                              ids: list[str] | None, max_in_flight: int = MAX_IN_FLIGHT) -> list[ReplayResult]:
    """POST again the dead letters of `directory` (those of `ids`, or all if None), the same bodies
    freshly signed, and remove the delivered ones from the file. One result per id, in order."""
    letters = {letter.id: letter for letter in read_dead_letters(directory)}
    wanted = list(letters) if ids is None else list(dict.fromkeys(ids))
    results: dict[str, ReplayResult] = {}
    slots = asyncio.Semaphore(max_in_flight)

    async def replay_one(session: aiohttp.ClientSession, letter: DeadLetter) -> None:
        async with slots:
            body = event_body(letter.id, letter.type, letter.created, letter.data)
            failure = await post_event(session, settings, letter.id, body)
        results[letter.id] = ReplayResult(letter.id, failure is None, failure or "delivered")

    async with new_session(settings, max_in_flight) as session:
        await asyncio.gather(*(replay_one(session, letters[event_id])
                               for event_id in wanted if event_id in letters))
    delivered = {event_id for event_id, result in results.items() if result.delivered}
    if delivered:
        remove_dead_letters(directory, delivered)
    return [results.get(event_id, ReplayResult(event_id, False, "not found")) for event_id in wanted]
