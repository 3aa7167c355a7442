"""The webhook outbox of the merchant agent: durable, idempotent, retried, bounded.

    outbox = WebhookOutbox(settings, state_dir)
    outbox.enqueue(event_id, "order.accepted", data)   # fsynced before it returns
    await outbox.run(stop)                              # delivers until `stop` is set

Guarantees:
- an enqueued event is on disk (fsynced journal line) before `enqueue` returns, and is
  POSTed until the receiver answers 2xx, or `retry_for_s` after its first attempt it goes
  to `dead-letters.jsonl` (for `marketchain merchant replay`): at least once, never lost;
- `enqueue` of an id already pending or finished (the last `max_remembered`) does nothing
  and returns False, and `run` never sends a delivered id again, across restarts; a POST
  cut short by a crash or a stop is sent again, so receivers dedupe by `id`;
- first attempts go in enqueue order, at most `max_in_flight` POSTs at once; retries come
  back after their backoff, so there is no order between events (not even per order):
  receivers order by `data.height` or read the order's state in `data.order`.

Bounds: in memory, only metadata per pending event (≤ `max_pending`, default 10,000)
and the bodies in flight (≤ `max_in_flight` × `MAX_EVENT_BYTES`); on disk, pending events
(≤ `max_pending` × `MAX_EVENT_BYTES`) plus remembered ids, the journal being compacted
past twice that (and `compact_min_bytes`). An event enqueued while `max_pending` are
waiting goes straight to the dead letters (kept, not sent: replay it later).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from client.merchant.dead_letters import DeadLetter, append_dead_letter
from client.merchant.outbox_journal import OutboxJournal, PendingEvent
from client.merchant.webhook_sender import MAX_IN_FLIGHT, backoff_delay, new_session, post_event
from client.merchant.webhooks import MAX_EVENT_BYTES, WebhookSettings, event_body

MAX_PENDING = 10_000
"""Events waiting for delivery; beyond, new ones go straight to the dead letters."""

MAX_REMEMBERED = 65_536
"""Finished ids remembered (in memory and in the journal) so that enqueuing one again does nothing."""

COMPACT_MIN_BYTES = 4 * 1024 * 1024
"""The journal is compacted only beyond this size (and twice what it still needs)."""

MAX_EVENT_ID_CHARS = 128
"""Longest event id accepted."""

logger = logging.getLogger("marketchain.merchant.webhooks")


def now_ms() -> int:
    """Unix time in ms."""
    return int(time.time() * 1000)


def fitting_data(event_id: str, event_type: str, created: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data`, or, if its body would exceed `MAX_EVENT_BYTES` (a hostile node can serve a huge
    order), `data` with `order` cut to `{"id"}` and `"truncated": true` (the receiver reads
    the order from the node); ValueError if even that is too large."""
    if len(event_body(event_id, event_type, created, data)) <= MAX_EVENT_BYTES:
        return dict(data)
    order = data.get("order")
    trimmed = {**data, "order": {"id": order.get("id")} if isinstance(order, Mapping) else None,
               "truncated": True}
    size = len(event_body(event_id, event_type, created, trimmed))
    if size > MAX_EVENT_BYTES:
        raise ValueError(f"event {event_id} is {size} bytes; a webhook body is at most {MAX_EVENT_BYTES}")
    logger.warning("webhook %s: the order's JSON is too large for a webhook; sent as its id only", event_id)
    return trimmed


class WebhookOutbox:
    """Events waiting to be POSTed to the merchant's webhook URL, kept in `directory`."""

    def __init__(self, settings: WebhookSettings, directory: Path, *, max_in_flight: int = MAX_IN_FLIGHT,
                 max_pending: int = MAX_PENDING, max_remembered: int = MAX_REMEMBERED,
                 compact_min_bytes: int = COMPACT_MIN_BYTES, rng: random.Random | None = None) -> None:
        """Open the outbox of `directory` (created if missing), reading back its journal."""
        self.settings = settings
        """Where and how to POST."""
        self.directory = Path(directory)
        """The agent's state directory: journal and dead letters."""
        self.max_in_flight = max_in_flight
        """Bound of concurrent POSTs."""
        self.max_pending = max_pending
        """Bound of waiting events."""
        self.journal = OutboxJournal(self.directory, max_remembered, compact_min_bytes)
        """The durable record."""
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._schedule: list[tuple[float, int, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        for event in self.journal.pending.values():
            self._schedule_at(event, 0.0)

    def enqueue(self, event_id: str, event_type: str, data: Mapping[str, Any]) -> bool:
        """Keep an event for delivery (fsynced before returning); False if `event_id` was enqueued
        before. An event larger than `MAX_EVENT_BYTES` is sent with its order cut to its id
        (`fitting_data`). ValueError if the id or type is not a short string, or the event is
        still too large. Safe to call from any thread."""
        if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
            raise ValueError(f"an event id is a string of 1..{MAX_EVENT_ID_CHARS} characters")
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("an event type is a non-empty string")
        with self._lock:
            if self.journal.knows(event_id):  # the cheap check first: repeats are common
                return False
        created = now_ms()
        data = fitting_data(event_id, event_type, created, data)
        with self._lock:
            if self.journal.knows(event_id):
                return False
            if len(self.journal.pending) >= self.max_pending:
                self._dead_on_arrival(event_id, event_type, created, data)
                return True
            event = self.journal.add(event_id, event_type, created, data)
            self._schedule_at(event, 0.0)
        self._notify()
        return True

    def pending_count(self) -> int:
        """Events not yet delivered nor dead."""
        with self._lock:
            return len(self.journal.pending)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver pending and newly enqueued events until `stop` is set; POSTs still in flight
        then are cancelled (those events are sent again by the next run). One run at a time."""
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        with self._lock:
            for event in self.journal.pending.values():
                if event.due_s == float("inf"):  # cut short by the stop of an earlier run
                    self._schedule_at(event, 0.0)
        tasks: dict[asyncio.Task[None], PendingEvent] = {}
        stopping = asyncio.ensure_future(stop.wait())
        try:
            async with new_session(self.settings, self.max_in_flight) as session:
                while not stop.is_set():
                    self._wakeup.clear()
                    while len(tasks) < self.max_in_flight and (event := self._next_due()):
                        tasks[asyncio.create_task(self._attempt(session, event))] = event
                    waking = asyncio.ensure_future(self._wakeup.wait())
                    timeout = self._seconds_to_next_due() if len(tasks) < self.max_in_flight else None
                    done, _ = await asyncio.wait({*tasks, stopping, waking}, timeout=timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    waking.cancel()
                    for task in done & tasks.keys():
                        self._after_attempt(task, tasks.pop(task))
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            stopping.cancel()
            self._loop = self._wakeup = None

    def _after_attempt(self, task: asyncio.Task[None], event: PendingEvent) -> None:
        """An attempt that raised (a journal write failed): log it and try again after a backoff."""
        error = task.exception()
        if error is not None:
            logger.error("webhook %s: attempt failed: %r", event.id, error)
            with self._lock:
                if event.id in self.journal.pending:
                    self._schedule_at(event, time.time() + self.settings.first_backoff_s)

    def _notify(self) -> None:
        """Wake `run` (from any thread) after an enqueue."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:
                pass

    def _schedule_at(self, event: PendingEvent, due_s: float) -> None:
        """Make `event` due at `due_s` (unix seconds)."""
        event.due_s = due_s
        heapq.heappush(self._schedule, (due_s, event.sequence, event.id))

    def _next_due(self) -> PendingEvent | None:
        """The next pending event due now (taken off the schedule), or None."""
        with self._lock:
            while self._schedule:
                due_s, _, event_id = self._schedule[0]
                event = self.journal.pending.get(event_id)
                if event is None or event.due_s != due_s:
                    heapq.heappop(self._schedule)
                    continue
                if due_s > time.time():
                    return None
                heapq.heappop(self._schedule)
                event.due_s = float("inf")
                return event
            return None

    def _seconds_to_next_due(self) -> float | None:
        """Seconds until the next scheduled attempt, None if none is scheduled."""
        with self._lock:
            if not self._schedule:
                return None
            return max(0.0, self._schedule[0][0] - time.time())

    async def _attempt(self, session: aiohttp.ClientSession, event: PendingEvent) -> None:
        """POST `event` once; then delivered, rescheduled after its backoff, or dead."""
        with self._lock:
            record = self.journal.read(event)
            if event.first_attempt_ms is None:
                self.journal.mark_attempt(event, now_ms())
        body = event_body(event.id, event.type, event.created_ms, record["data"])
        event.attempts += 1
        failure = await post_event(session, self.settings, event.id, body)
        with self._lock:
            if event.id not in self.journal.pending:
                return
            if failure is None:
                self.journal.finish(event.id, "delivered")
                return
            event.last_error = failure
            now = time.time()
            deadline = event.first_attempt_ms / 1000 + self.settings.retry_for_s
            if now >= deadline:
                self._give_up(event, record["data"])
            else:
                delay = backoff_delay(event.attempts, self.settings, self._rng)
                logger.info("webhook %s: %s (attempt %d), retrying in %.1f s",
                            event.id, failure, event.attempts, delay)
                self._schedule_at(event, min(now + delay, deadline))

    def _give_up(self, event: PendingEvent, data: Any) -> None:
        """Move `event` to the dead letters (first), then mark it dead in the journal."""
        logger.warning("webhook %s: giving up after %d attempts over %.0f s (%s): dead letter",
                       event.id, event.attempts, self.settings.retry_for_s, event.last_error)
        append_dead_letter(self.directory, DeadLetter(
            event.id, event.type, event.created_ms, data, event.attempts, event.first_attempt_ms,
            now_ms(), event.last_error))
        self.journal.finish(event.id, "dead")

    def _dead_on_arrival(self, event_id: str, event_type: str, created: int, data: Any) -> None:
        """Keep an event that finds the outbox full in the dead letters, unsent."""
        reason = f"outbox full: {self.max_pending} events waiting"
        logger.warning("webhook %s: %s; kept in the dead letters", event_id, reason)
        append_dead_letter(self.directory, DeadLetter(
            event_id, event_type, created, dict(data), 0, None, None, reason))
        self.journal.finish(event_id, "dead")
