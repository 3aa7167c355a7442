"""The in-process event hub behind `GET /events` (PROTOCOL §10): final blocks, transaction
results and order state changes, as they become final.

No I/O and no clock here. `Node.after_block` hands every final block (made by consensus or
fetched by block sync) to `EventHub.publish_later` with a function that turns it into
events (`block_events`, over a snapshot of the orders it touches); the hub builds them
at once if anyone listens, else only when a client subscribes (speed: a node under load
with no listener does not build events nobody reads). The hub keeps the most recent `HISTORY_SIZE` events, so that a client that
reconnects with `Last-Event-ID` resumes where it left off, and offers each new event to
every subscription. A subscription's queue is bounded (`QUEUE_SIZE`): a client that does
not keep up is dropped, never waited for, and may reconnect and resume.

Every event has the id `height:sequence`: `sequence` numbers the events of one block,
0 for the `block` event, then the `order` events of the deadlines that fired before the
transactions (R15), then for each transaction in block order its `tx` event followed by
the `order` events of its receipt. Ids therefore sort like the chain.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from marketplace_tx.chain.block import Block
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.rules.order_records import Order
from node.indexer import participants

HISTORY_SIZE = 1000
"""Most recent events kept for `Last-Event-ID` resume."""
MAX_SUBSCRIBERS = 256
"""Most concurrent subscriptions; one more is refused (HTTP 429 `rate_limited`)."""
QUEUE_SIZE = 1000
"""Events a subscription may have waiting; one more and it is dropped."""

EventPosition = tuple[int, int]
"""(height, sequence): where an event sits in the chain's event stream."""


@dataclass(frozen=True)
class ChainEvent:
    """One event of the stream."""

    height: int
    """Height of the block it comes from."""
    sequence: int
    """Its number among the events of that block."""
    kind: str
    """`block`, `tx` or `order`."""
    data: dict[str, Any]
    """The JSON body sent to clients (bytes already hex)."""
    accounts: frozenset[bytes] = frozenset()
    """Addresses taking part (tx and order events): what `account=` matches."""
    order_id: bytes | None = None
    """The order it concerns, if any: what `order=` matches."""

    @property
    def id(self) -> str:
        """`height:sequence`, the SSE event id."""
        return f"{self.height}:{self.sequence}"

    @property
    def position(self) -> EventPosition:
        """(height, sequence), for ordering and resume."""
        return (self.height, self.sequence)


@dataclass(frozen=True)
class EventFilter:
    """What a subscriber asked for; no filter means every event, blocks included."""

    account: bytes | None = None
    """Only tx and order events this address takes part in."""
    order_id: bytes | None = None
    """Only order events of this order and the transactions acting on it."""

    def matches(self, event: ChainEvent) -> bool:
        """True iff the subscriber wants `event`. A filter excludes `block` events."""
        if self.account is None and self.order_id is None:
            return True
        if event.kind == "block":
            return False
        if self.account is not None and self.account not in event.accounts:
            return False
        return self.order_id is None or event.order_id == self.order_id


def parse_event_id(text: str) -> EventPosition | None:
    """The position of an event id `height:sequence`, or None if it is not one."""
    height, colon, sequence = text.partition(":")
    if not colon or not height.isdigit() or not sequence.isdigit() or len(text) > 40:
        return None
    return (int(height), int(sequence))


# --- turning a block into events -------------------------------------------------------------


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _order_parties(order: Order | None) -> set[bytes]:
    if order is None:
        return set()
    return {party for party in (order.buyer, order.merchant, order.arbiter, order.carrier) if party is not None}


class _EventBuilder:
    """Numbers the events of one block as they are added."""

    def __init__(self, height: int, time: int) -> None:
        self.height = height
        self.time = time
        self.events: list[ChainEvent] = []

    def add(self, kind: str, data: dict[str, Any], accounts: Iterable[bytes] = (), order_id: bytes | None = None) -> None:
        sequence = len(self.events)
        self.events.append(ChainEvent(self.height, sequence, kind, data, frozenset(accounts), order_id))

    def order_change(self, event: dict[str, Any], order: Order | None, tx_hash: bytes | None) -> None:
        """An `order` event from a receipt's `order_state` or `order_placed` event."""
        order_id = event["order_id"]
        placed = event["type"] == "order_placed"
        data = {
            "order_id": order_id.hex(),
            "from": None if placed else event["from"],
            "to": "placed" if placed else event["to"],
            "by": "order_place" if placed else event["by"],
            "height": self.height,
            "time": self.time,
            "tx": tx_hash.hex() if tx_hash is not None else None,
        }
        if order is not None:
            data["buyer"], data["merchant"] = order.buyer.hex(), order.merchant.hex()
        accounts = _order_parties(order) | {event[name] for name in ("buyer", "merchant") if name in event}
        self.add("order", data, accounts, order_id)


ORDER_EVENT_TYPES = ("order_state", "order_placed")
"""Receipt and block event types that become `order` events."""


def block_events(
    block: Block,
    transactions: Sequence[Transaction],
    receipts: Sequence[Receipt],
    deadline_events: Sequence[dict[str, Any]],
    order_of: Callable[[bytes], Order | None],
) -> list[ChainEvent]:
    """The events of one final block, in stream order.

    `order_of(order_id)` reads an order as of the end of this block; it names the
    buyer, merchant, carrier and arbiter of the orders the block touches.
    """
    header = block.header
    builder = _EventBuilder(header.height, header.time)
    builder.add(
        "block",
        {
            "height": header.height,
            "hash": block.hash.hex(),
            "time": header.time,
            "tx_count": len(transactions),
            "proposer": header.proposer.hex(),
        },
    )
    orders: dict[bytes, Order | None] = {}

    def order(order_id: Any) -> Order | None:
        if not isinstance(order_id, bytes) or len(order_id) != 32:
            return None
        if order_id not in orders:
            orders[order_id] = order_of(order_id)
        return orders[order_id]

    for event in deadline_events:
        if event.get("type") in ORDER_EVENT_TYPES:
            builder.order_change(event, order(event["order_id"]), None)
    for index, (tx, receipt) in enumerate(zip(transactions, receipts, strict=True)):
        target = _target_order(tx, receipt)
        acted_on = order(target)
        data: dict[str, Any] = {
            "hash": tx.hash.hex(),
            "height": header.height,
            "index": index,
            "type": tx.type,
            "sender": tx.sender.hex(),
            "ok": receipt.ok,
        }
        if receipt.code is not None:
            data["code"] = receipt.code
        accounts = participants(tx, receipt, acted_on) | _order_parties(acted_on)
        builder.add("tx", data, accounts, target if isinstance(target, bytes) else None)
        for event in receipt.events:
            if event.get("type") in ORDER_EVENT_TYPES:
                builder.order_change(event, order(event["order_id"]), tx.hash)
    return builder.events


def _target_order(tx: Transaction, receipt: Receipt) -> Any:
    """The order a transaction acts on (the one it creates, for `order_place`), if any."""
    return tx.hash if tx.type == "order_place" and receipt.ok else tx.payload.get("order_id")


def orders_named(
    transactions: Sequence[Transaction], receipts: Sequence[Receipt], deadline_events: Sequence[dict[str, Any]]
) -> set[bytes]:
    """Every order id `block_events` will ask `order_of` about for this block, so that a
    caller can read them once, as of this block, and build the events later."""
    named = [event.get("order_id") for event in deadline_events if event.get("type") in ORDER_EVENT_TYPES]
    for tx, receipt in zip(transactions, receipts, strict=True):
        named.append(_target_order(tx, receipt))
        named += [event.get("order_id") for event in receipt.events if event.get("type") in ORDER_EVENT_TYPES]
    return {order_id for order_id in named if isinstance(order_id, bytes) and len(order_id) == 32}


# --- subscriptions and the hub ---------------------------------------------------------------


class SubscriberLimit(Exception):
    """`MAX_SUBSCRIBERS` subscriptions are open already."""


class Subscription:
    """One client's bounded queue of events that match its filter."""

    def __init__(self, event_filter: EventFilter, queue_size: int) -> None:
        self.filter = event_filter
        """What the client asked for."""
        self.queue_size = queue_size
        """Most events waiting before the subscription is dropped."""
        self.dropped = False
        """True once the client fell `queue_size` events behind; it gets nothing more."""
        self.closed = False
        """True once the hub closed (node shutting down)."""
        self._pending: deque[ChainEvent] = deque()
        self._wakeup = asyncio.Event()

    def offer(self, event: ChainEvent) -> None:
        """Queue `event` if it matches; drop the subscription if its queue is full."""
        if self.dropped or self.closed or not self.filter.matches(event):
            return
        if len(self._pending) >= self.queue_size:
            self.dropped = True
            self._pending.clear()
        else:
            self._pending.append(event)
        self._wakeup.set()

    def close(self) -> None:
        """End the subscription (the stream finishes)."""
        self.closed = True
        self._wakeup.set()

    def take(self) -> list[ChainEvent]:
        """Every queued event, oldest first; the queue is left empty."""
        events = list(self._pending)
        self._pending.clear()
        self._wakeup.clear()
        return events

    async def wait(self, timeout: float) -> list[ChainEvent]:
        """Queued events, waiting up to `timeout` seconds for one (empty on timeout)."""
        if not self._pending and not (self.dropped or self.closed):
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass
        return self.take()


class EventHub:
    """Recent events and the live subscriptions."""

    def __init__(
        self, history_size: int = HISTORY_SIZE, max_subscribers: int = MAX_SUBSCRIBERS, queue_size: int = QUEUE_SIZE
    ) -> None:
        self.max_subscribers = max_subscribers
        """Most concurrent subscriptions."""
        self.queue_size = queue_size
        """Bound of each subscription's queue."""
        self.history: deque[ChainEvent] = deque(maxlen=history_size)
        """The most recent events, oldest first."""
        self.subscriptions: set[Subscription] = set()
        """Open subscriptions."""
        self.published = 0
        """Events published since the node started."""
        self.dropped = 0
        """Subscriptions dropped because their client fell behind."""
        self.forgotten_up_to: EventPosition | None = None
        """The newest position no longer (or never) held in `history`; None if nothing was lost."""
        self.deferred: deque[tuple[int, int, Callable[[], list[ChainEvent]]]] = deque()
        """Blocks whose events are not built yet, oldest first: (height, at least how many
        events it has, the function that builds them)."""
        self._deferred_events = 0

    def start_after(self, height: int) -> None:
        """Events of blocks up to `height` exist but are not held (node start)."""
        self.forgotten_up_to = max(self.forgotten_up_to or (0, 0), (height, 2**63))

    def publish_later(self, height: int, minimum_events: int, build: Callable[[], list[ChainEvent]]) -> None:
        """The events of final block `height` (at least `minimum_events` of them), built by
        `build()` now if anyone listens, else when a client subscribes. Blocks whose events
        would have left `history` by then are forgotten unbuilt (a resuming client is told
        of the gap, as for any event no longer held)."""
        if self.subscriptions:
            self.build_deferred()
            self.publish(build())
            return
        self.deferred.append((height, minimum_events, build))
        self._deferred_events += minimum_events
        limit = self.history.maxlen or 0
        while self.deferred and self._deferred_events - self.deferred[0][1] >= limit:
            oldest, count, _ = self.deferred.popleft()
            self._deferred_events -= count
            self.forgotten_up_to = max(self.forgotten_up_to or (0, 0), (oldest, 2**63))
            self.history.clear()  # older still: the newer blocks would push it out anyway

    def build_deferred(self) -> None:
        """Build and publish the events of every deferred block, in chain order."""
        while self.deferred:
            _, count, build = self.deferred.popleft()
            self._deferred_events -= count
            self.publish(build())

    def publish(self, events: Iterable[ChainEvent]) -> None:
        """Remember new events and offer them to every subscription."""
        for event in events:
            if len(self.history) == self.history.maxlen:
                self.forgotten_up_to = self.history[0].position
            self.history.append(event)
            self.published += 1
            for subscription in list(self.subscriptions):
                was_dropped = subscription.dropped
                subscription.offer(event)
                if subscription.dropped and not was_dropped:
                    self.dropped += 1

    def subscribe(
        self, event_filter: EventFilter, after: EventPosition | None = None
    ) -> tuple[Subscription, list[ChainEvent], bool]:
        """Open a subscription: `(subscription, replay, gap)`.

        With `after` (a `Last-Event-ID`), `replay` holds the held events after it that
        match; `gap` is True when events after it are no longer held, so the client
        must re-read what it missed over the REST API. Raises `SubscriberLimit`.
        """
        if len(self.subscriptions) >= self.max_subscribers:
            raise SubscriberLimit(f"at most {self.max_subscribers} event streams are open at once")
        self.build_deferred()
        subscription = Subscription(event_filter, self.queue_size)
        self.subscriptions.add(subscription)
        if after is None:
            return subscription, [], False
        replay = [event for event in self.history if event.position > after and event_filter.matches(event)]
        gap = self.forgotten_up_to is not None and self.forgotten_up_to > after
        return subscription, replay, gap

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription whose stream ended."""
        self.subscriptions.discard(subscription)

    def close(self) -> None:
        """End every subscription (node shutdown)."""
        for subscription in list(self.subscriptions):
            subscription.close()
