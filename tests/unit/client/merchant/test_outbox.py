"""The webhook outbox against a real, flaky HTTP receiver on loopback (issue 16): every event
reaches it exactly once by id, retries back off, what never gets through becomes a dead
letter that replay delivers, and a restart neither loses nor re-sends anything."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from client.merchant.dead_letters import DEAD_LETTERS_NAME, read_dead_letters
from client.merchant.outbox import WebhookOutbox
from client.merchant.outbox_journal import JOURNAL_NAME
from client.merchant.webhook_sender import replay_dead_letters
from client.merchant.webhooks import MAX_EVENT_BYTES, WebhookSettings
from tests.e2e.webhook_receiver import Policy, WebhookReceiver

SECRET = b"whsec_outbox_test"
DEADLINE_S = 60.0


class CeilingRandom(random.Random):
    """Full jitter that always draws the ceiling: the backoff schedule made visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def until(predicate: Callable[[], object], message: str, timeout: float = DEADLINE_S) -> None:
    """Wait for `predicate` with a generous deadline, polling."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {message}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver(SECRET)
    await server.start()
    yield server
    await server.stop()


def settings_for(receiver: WebhookReceiver, **overrides: float) -> WebhookSettings:
    values = {"retry_for_s": 30.0, "first_backoff_s": 0.02, "max_backoff_s": 0.1, "timeout_s": 5.0}
    values.update(overrides)
    return WebhookSettings(receiver.url, SECRET, **values)


class Running:
    """An outbox's `run` as a task, stopped on exit."""

    def __init__(self, outbox: WebhookOutbox) -> None:
        self.outbox, self.stop = outbox, asyncio.Event()

    async def __aenter__(self) -> WebhookOutbox:
        self.task = asyncio.create_task(self.outbox.run(self.stop))
        return self.outbox

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, DEADLINE_S)


def order_event(number: int) -> tuple[str, str, dict]:
    return f"evt_{number:032x}", "order.placed", {"order": {"id": f"{number:064x}"}, "to": "placed",
                                                   "height": number}


def flaky(number: int, event_id: str, attempt: int) -> str:
    """Drops or fails the first one or two attempts of most events, answers the rest."""
    key = int(event_id[-4:], 16)
    if attempt == 1 and key % 3 != 0:
        return "drop" if key % 2 else "fail"
    if attempt == 2 and key % 4 == 1:
        return "fail"
    return "ok"


async def test_a_flaky_receiver_gets_every_event_exactly_once_by_id(receiver: WebhookReceiver,
                                                                    tmp_path: Path) -> None:
    receiver.policy = flaky
    outbox = WebhookOutbox(settings_for(receiver), tmp_path)
    events = [order_event(number) for number in range(24)]
    async with Running(outbox):
        for event in events:
            assert outbox.enqueue(*event)
        await until(lambda: outbox.pending_count() == 0, "every event delivered")
    assert set(receiver.delivered) == {event_id for event_id, _, _ in events}
    assert all(request.signature_ok for request in receiver.requests)
    assert receiver.answered_ok == {event_id: 1 for event_id, _, _ in events}
    outcomes = {request.outcome for request in receiver.requests}
    assert {"drop", "fail"} <= outcomes, "the receiver misbehaved as planned"
    assert len(receiver.requests) > len(events), "failed attempts were retried"
    for event_id, event_type, data in events:
        body = json.loads(receiver.delivered[event_id])
        assert (body["id"], body["type"], body["data"]) == (event_id, event_type, data)
        bodies = {request.body for request in receiver.attempts_of(event_id)}
        assert len(bodies) == 1, "every attempt sends the same bytes"


async def test_enqueue_is_idempotent_and_a_delivered_id_is_never_sent_again(
        receiver: WebhookReceiver, tmp_path: Path) -> None:
    outbox = WebhookOutbox(settings_for(receiver), tmp_path)
    event = order_event(1)
    assert outbox.enqueue(*event)
    assert not outbox.enqueue(*event)
    async with Running(outbox):
        await until(lambda: event[0] in receiver.delivered, "delivered")
        assert not outbox.enqueue(*event)
        assert outbox.enqueue(*order_event(2))
        await until(lambda: outbox.pending_count() == 0, "the second delivered")
    reopened = WebhookOutbox(settings_for(receiver), tmp_path)
    assert not reopened.enqueue(*event)
    assert reopened.pending_count() == 0
    assert [request.event_id for request in receiver.requests] == [event[0], order_event(2)[0]]


async def test_the_backoff_grows_between_attempts(receiver: WebhookReceiver, tmp_path: Path) -> None:
    receiver.policy = lambda number, event_id, attempt: "fail" if attempt <= 5 else "ok"
    settings = settings_for(receiver, first_backoff_s=0.1, max_backoff_s=0.4)
    outbox = WebhookOutbox(settings, tmp_path, rng=CeilingRandom())
    async with Running(outbox):
        outbox.enqueue(*order_event(3))
        await until(lambda: outbox.pending_count() == 0, "delivered on the sixth attempt")
    times = [request.at for request in receiver.requests]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert len(gaps) == 5
    for gap, ceiling in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        assert gap >= ceiling - 0.02, f"gaps {gaps}: a retry came before its backoff"


async def test_a_dead_letter_after_retry_for_s_and_replay_delivers_it(receiver: WebhookReceiver,
                                                                       tmp_path: Path) -> None:
    receiver.policy = lambda number, event_id, attempt: "ok" if event_id.endswith("28") else "fail"
    settings = settings_for(receiver, retry_for_s=0.6, first_backoff_s=0.05, max_backoff_s=0.2)
    outbox = WebhookOutbox(settings, tmp_path)
    event_id, event_type, data = order_event(4)
    async with Running(outbox):
        outbox.enqueue(event_id, event_type, data)
        await until(lambda: outbox.pending_count() == 0, "given up")
    attempts = receiver.attempts_of(event_id)
    assert len(attempts) >= 2
    [letter] = read_dead_letters(tmp_path)
    assert letter.last_attempt >= letter.first_attempt + 600, "retried until retry_for_s"
    assert (letter.id, letter.type, letter.data, letter.attempts) == (event_id, event_type, data,
                                                                      len(attempts))
    assert letter.last_error == "HTTP 500"
    assert not outbox.enqueue(event_id, event_type, data), "a dead id is not enqueued again"
    reopened = WebhookOutbox(settings, tmp_path)
    assert reopened.pending_count() == 0
    async with Running(reopened):
        reopened.enqueue(*order_event(40))
        await until(lambda: reopened.pending_count() == 0, "another event through the same receiver")
    assert len(receiver.attempts_of(event_id)) == len(attempts), "a dead letter is not retried by run()"

    receiver.policy = lambda number, event_id, attempt: "ok"
    [result] = await replay_dead_letters(settings, tmp_path, None)
    assert (result.id, result.delivered) == (event_id, True)
    assert receiver.delivered[event_id] == attempts[0].body, "the replay sends the original body"
    assert read_dead_letters(tmp_path) == []
    assert [(r.id, r.delivered, r.detail) for r in await replay_dead_letters(settings, tmp_path, ["evt_x"])] \
        == [("evt_x", False, "not found")]


async def test_a_failed_replay_keeps_the_dead_letter(receiver: WebhookReceiver, tmp_path: Path) -> None:
    receiver.policy = lambda number, event_id, attempt: "drop"
    outbox = WebhookOutbox(settings_for(receiver), tmp_path, max_pending=1)
    outbox.enqueue(*order_event(5))
    assert outbox.enqueue(*order_event(6)), "kept, in the dead letters"
    [letter] = read_dead_letters(tmp_path)
    assert (letter.id, letter.attempts, letter.last_error) == (order_event(6)[0], 0,
                                                               "outbox full: 1 events waiting")
    [result] = await replay_dead_letters(settings_for(receiver), tmp_path, [letter.id])
    assert not result.delivered and result.detail
    assert [kept.id for kept in read_dead_letters(tmp_path)] == [letter.id]


async def test_a_restart_neither_loses_nor_resends(receiver: WebhookReceiver, tmp_path: Path) -> None:
    events = [order_event(number) for number in range(10)]
    early = {event_id for event_id, _, _ in events[:5]}
    receiver.policy = lambda number, event_id, attempt: "ok" if event_id in early else "fail"
    first = WebhookOutbox(settings_for(receiver), tmp_path)
    async with Running(first):
        for event in events:
            first.enqueue(*event)
        await until(lambda: set(receiver.delivered) == early
                    and all(receiver.attempts_of(event_id) for event_id, _, _ in events), "half through")
    first_attempts = {event.id: event.first_attempt_ms for event in first.journal.pending.values()}

    seen_before = len(receiver.requests)
    receiver.policy = always_ok_policy()
    second = WebhookOutbox(settings_for(receiver), tmp_path)
    assert second.pending_count() == 5
    assert {event.id: event.first_attempt_ms for event in second.journal.pending.values()} == first_attempts
    async with Running(second):
        await until(lambda: second.pending_count() == 0, "the rest delivered")
    after_restart = [request.event_id for request in receiver.requests[seen_before:]]
    assert not early & set(after_restart), "a delivered event was sent again"
    assert set(receiver.delivered) == {event_id for event_id, _, _ in events}
    assert max(receiver.answered_ok.values()) == 1


async def test_a_post_cut_short_by_stop_is_sent_by_the_next_run(receiver: WebhookReceiver,
                                                                tmp_path: Path) -> None:
    receiver.policy = lambda number, event_id, attempt: "hold" if attempt == 1 else "ok"
    outbox = WebhookOutbox(settings_for(receiver), tmp_path)
    async with Running(outbox):
        outbox.enqueue(*order_event(7))
        await until(lambda: receiver.in_flight == 1, "the first POST held")
    assert outbox.pending_count() == 1
    async with Running(outbox):
        await until(lambda: outbox.pending_count() == 0, "sent again by the same outbox's next run")
    assert [request.outcome for request in receiver.requests] == ["hold", "ok"]


async def test_a_receiver_that_does_not_answer_times_out_and_is_retried(receiver: WebhookReceiver,
                                                                        tmp_path: Path) -> None:
    receiver.policy = lambda number, event_id, attempt: "hold" if attempt == 1 else "ok"
    outbox = WebhookOutbox(settings_for(receiver, timeout_s=0.3), tmp_path)
    async with Running(outbox):
        outbox.enqueue(*order_event(8))
        await until(lambda: outbox.pending_count() == 0, "delivered on the second attempt")
    assert [request.outcome for request in receiver.requests] == ["hold", "ok"]


async def test_events_enqueued_from_another_thread_are_sent(receiver: WebhookReceiver,
                                                            tmp_path: Path) -> None:
    outbox = WebhookOutbox(settings_for(receiver), tmp_path)
    async with Running(outbox):
        await until(lambda: outbox._loop is not None, "the run started")
        results = await asyncio.gather(*(asyncio.to_thread(outbox.enqueue, *order_event(number))
                                         for number in range(8)))
        assert all(results)
        await until(lambda: len(receiver.delivered) == 8, "all eight delivered")
    assert outbox.pending_count() == 0


def always_ok_policy() -> Policy:
    return lambda number, event_id, attempt: "ok"


async def test_a_torn_journal_line_is_cut_and_nothing_enqueued_is_lost(receiver: WebhookReceiver,
                                                                       tmp_path: Path) -> None:
    outbox = WebhookOutbox(settings_for(receiver), tmp_path)
    for number in range(3):
        outbox.enqueue(*order_event(number))
    journal = tmp_path / JOURNAL_NAME
    intact = journal.stat().st_size
    with open(journal, "ab") as file:
        file.write(b'{"op":"enqueue","id":"evt_torn","ty')
    reopened = WebhookOutbox(settings_for(receiver), tmp_path)
    assert journal.stat().st_size == intact
    assert reopened.pending_count() == 3
    assert reopened.enqueue(*order_event(3))
    async with Running(WebhookOutbox(settings_for(receiver), tmp_path)) as third:
        await until(lambda: third.pending_count() == 0, "all four delivered")
    assert len(receiver.delivered) == 4


async def test_posts_in_flight_are_bounded(receiver: WebhookReceiver, tmp_path: Path) -> None:
    receiver.policy = lambda number, event_id, attempt: "hold"
    outbox = WebhookOutbox(settings_for(receiver), tmp_path, max_in_flight=3)
    async with Running(outbox):
        for number in range(12):
            outbox.enqueue(*order_event(number))
        await until(lambda: receiver.in_flight == 3, "three held")
        assert len(receiver.requests) == 3
        receiver.release()
        await until(lambda: outbox.pending_count() == 0, "all delivered")
    assert receiver.max_in_flight == 3
    enqueued = [order_event(number)[0] for number in range(12)]
    arrived = [enqueued.index(request.event_id) for request in receiver.requests]
    assert sorted(arrived) == list(range(12))
    assert all(position <= rank + 2 for rank, position in enumerate(arrived)), \
        f"first attempts go in enqueue order, three at a time: {arrived}"


async def test_the_journal_is_compacted_and_still_remembers(receiver: WebhookReceiver,
                                                            tmp_path: Path) -> None:
    settings = settings_for(receiver)
    outbox = WebhookOutbox(settings, tmp_path, compact_min_bytes=4_000, max_remembered=20)
    async with Running(outbox):
        for number in range(60):
            outbox.enqueue(*order_event(number))
        await until(lambda: outbox.pending_count() == 0, "all delivered")
    size = (tmp_path / JOURNAL_NAME).stat().st_size
    assert size <= 4_000 + 400, f"the journal grew to {size} bytes"
    reopened = WebhookOutbox(settings, tmp_path, compact_min_bytes=4_000, max_remembered=20)
    assert reopened.pending_count() == 0
    assert not any(reopened.enqueue(*order_event(number)) for number in range(40, 60))
    assert len(receiver.requests) == 60


def test_bad_events_are_refused(tmp_path: Path) -> None:
    outbox = WebhookOutbox(WebhookSettings("http://127.0.0.1:9/hooks", SECRET), tmp_path)
    with pytest.raises(ValueError, match="at most 65536"):
        outbox.enqueue("evt_big", "order.placed", {"order": {}, "note": "x" * MAX_EVENT_BYTES})
    with pytest.raises(ValueError, match="event id"):
        outbox.enqueue("", "order.placed", {})
    with pytest.raises(ValueError, match="event id"):
        outbox.enqueue("e" * 129, "order.placed", {})
    assert outbox.pending_count() == 0
    assert not (tmp_path / DEAD_LETTERS_NAME).exists()


async def test_an_order_too_large_for_a_webhook_is_sent_as_its_id(receiver: WebhookReceiver,
                                                                 tmp_path: Path) -> None:
    outbox = WebhookOutbox(settings_for(receiver), tmp_path)
    huge = {"id": "ab" * 32, "history": [{"state": "placed", "note": "x" * 1000}] * 100}
    async with Running(outbox):
        assert outbox.enqueue("evt_huge", "order.placed", {"order": huge, "to": "placed", "height": 9})
        await until(lambda: outbox.pending_count() == 0, "delivered")
    body = receiver.delivered_events()["evt_huge"]
    assert body["data"] == {"order": {"id": "ab" * 32}, "to": "placed", "height": 9, "truncated": True}
    assert len(receiver.delivered["evt_huge"]) <= MAX_EVENT_BYTES
