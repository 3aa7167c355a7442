"""Per-peer send and receive queues bounded in bytes, per peer and in total (R32).

Every message waiting for a peer's socket, or read from it and waiting for the
application, is counted in bytes twice: against the peer's own limit and against a
node-wide `ByteBudget` shared by every peer of one direction. So no peer, and no set
of peers, can make the node hold more than the configured bytes:

- `SendQueue` refuses a message that does not fit (gossip is dropped, as before) and
  notes since when a peer's queue has been full: a peer that does not read its socket
  is disconnected by its `Peer` after `send_stall_timeout_s`. A *streamed* item (a
  block response) holds only a small producer: the bytes are read and encoded when
  the writer reaches it, counted while they are written, and never queued.
- `ReceiveQueue` counts the frames read from a peer; while it (or the total) is full
  the reader stops reading that peer: back-pressure through TCP, not a growing list.

A queued message is counted until its write has completed, so "bytes held" covers the
frame being written too. A gossip message sent to many peers is one `bytes` object in
memory: the node-wide send budget counts it once, however many queues hold it (each
peer's own limit counts it in full).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Producer = Callable[[], bytes | None]
"""Makes a streamed message's envelope bytes when it is its turn (None: nothing to send)."""

Item = TypeVar("Item")


class ByteBudget:
    """Bytes held by the queues of every peer in one direction, against a node-wide limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """Most bytes all queues of this direction may hold together."""
        self.used = 0
        """Bytes held now."""
        self._released = asyncio.Event()
        self._shared: dict[int, tuple[bytes, int]] = {}

    def fits(self, size: int) -> bool:
        """True if `size` more bytes stay within the limit."""
        return self.used + size <= self.limit

    def try_reserve(self, size: int) -> bool:
        """Count `size` bytes if they fit; False (nothing counted) otherwise."""
        if not self.fits(size):
            return False
        self.used += size
        return True

    def reserve(self, size: int) -> None:
        """Count `size` bytes that are already held (a frame already read)."""
        self.used += size

    def release(self, size: int) -> None:
        """Stop counting `size` bytes and wake whoever waits for room."""
        self.used = max(0, self.used - size)
        self._released.set()

    def try_hold(self, data: bytes) -> bool:
        """Count `data` if it fits, once however many queues hold the same object;
        False (nothing counted) if it does not fit."""
        entry = self._shared.get(id(data))
        if entry is not None and entry[0] is data:
            self._shared[id(data)] = (data, entry[1] + 1)
            return True
        if not self.try_reserve(len(data)):
            return False
        self._shared[id(data)] = (data, 1)
        return True

    def hold(self, data: bytes) -> None:
        """Count `data` (already made) like `try_hold`, even beyond the limit."""
        if not self.try_hold(data):
            self.reserve(len(data))
            self._shared[id(data)] = (data, 1)

    def drop(self, data: bytes) -> None:
        """One holder of `data` let it go; its bytes stop counting with the last holder."""
        entry = self._shared.get(id(data))
        if entry is None or entry[0] is not data:
            return
        if entry[1] > 1:
            self._shared[id(data)] = (data, entry[1] - 1)
        else:
            del self._shared[id(data)]
            self.release(len(data))

    async def wait_released(self) -> None:
        """Return after the next `release`."""
        self._released.clear()
        await self._released.wait()


@dataclass
class Outgoing:
    """One entry of a `SendQueue`: envelope bytes, or a producer of them (streamed)."""

    data: bytes | None
    """The encoded envelope (None for a streamed item until it is produced)."""
    producer: Producer | None = None
    """For a streamed item: makes the bytes when the writer reaches it."""
    size: int = 0
    """Bytes counted for this item now."""


class SendQueue:
    """Messages waiting to be written to one peer, bounded in count and bytes (R32)."""

    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        max_streamed: int,
        budget: ByteBudget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_messages = max_messages
        """Most messages queued (streamed items included)."""
        self.max_bytes = max_bytes
        """Bytes held for this peer beyond which nothing more is queued: at most this plus
        one message (a frame, ≤ 8 MiB), so that a largest block still goes after a vote."""
        self.max_streamed = max_streamed
        """Most streamed items queued."""
        self.budget = budget
        """The node-wide send budget."""
        self.bytes = 0
        """Bytes held for this peer: queued and being written."""
        self.streamed = 0
        """Streamed items queued and not yet produced."""
        self._clock = clock
        self._items: deque[Outgoing] = deque()
        self._ready = asyncio.Event()
        self._full_since: float | None = None
        self._current: Outgoing | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, data: bytes) -> bool:
        """Queue encoded bytes; False if the peer's or the node's limit refuses them."""
        size = len(data)
        if self._closed or len(self._items) >= self.max_messages:
            return self._refused(own_limit=not self._closed)
        if self.bytes >= self.max_bytes:  # full; below it one more message of any size fits
            return self._refused(own_limit=True)
        if not self.budget.try_hold(data):
            return self._refused(own_limit=False)
        self.bytes += size
        self._items.append(Outgoing(data, None, size))
        self._ready.set()
        return True

    def put_streamed(self, producer: Producer) -> bool:
        """Queue a producer, called when the writer reaches it; False if too many wait."""
        if self._closed or len(self._items) >= self.max_messages or self.streamed >= self.max_streamed:
            return self._refused(own_limit=not self._closed)
        self.streamed += 1
        self._items.append(Outgoing(None, producer, 0))
        self._ready.set()
        return True

    def _refused(self, own_limit: bool) -> bool:
        if own_limit and self._full_since is None:
            self._full_since = self._clock()
        return False

    def full_for(self) -> float:
        """Seconds since a message was first refused for this peer's own limits with no
        write completed since (0 if none was)."""
        return 0.0 if self._full_since is None else self._clock() - self._full_since

    async def get(self) -> Outgoing:
        """The next item, in order (waits while the queue is empty)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if item.producer is not None:
            self.streamed -= 1
        self._current = item
        return item

    def produced(self, item: Outgoing, data: bytes) -> None:
        """Count the bytes a streamed item produced while they are written."""
        if self._closed:
            return
        item.data, item.size = data, len(data)
        self.bytes += item.size
        self.budget.hold(data)

    def written(self, item: Outgoing) -> None:
        """The item's write completed (or failed): stop counting its bytes."""
        self._full_since = None
        self._current = None
        self._uncount(item)

    def _uncount(self, item: Outgoing) -> None:
        if item.size and item.data is not None:
            self.bytes -= item.size
            self.budget.drop(item.data)
        item.size = 0

    def close(self) -> None:
        """Drop everything queued and stop counting it (the connection is closing)."""
        if not self._closed:
            self._closed = True
            for item in (*self._items, *([self._current] if self._current else [])):
                self._uncount(item)
            self._items.clear()
            self.streamed = 0


class ReceiveQueue(Generic[Item]):
    """Messages read from one peer and waiting for the application, bounded in bytes."""

    def __init__(self, max_messages: int, max_bytes: int, budget: ByteBudget) -> None:
        self.max_messages = max_messages
        """Reading pauses once this many messages wait."""
        self.max_bytes = max_bytes
        """Reading pauses once this many bytes wait (or are being handled)."""
        self.budget = budget
        """The node-wide receive budget."""
        self.bytes = 0
        """Bytes held: waiting and being handled."""
        self._items: deque[tuple[Item, int]] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item, size: int) -> None:
        """Keep an item already read (the reader then waits for room before reading more)."""
        if self._closed:
            return
        self.bytes += size
        self.budget.reserve(size)
        self._items.append((item, size))
        self._ready.set()

    @property
    def full(self) -> bool:
        """True while the peer's or the node's receive limit is reached: do not read."""
        return (
            len(self._items) >= self.max_messages
            or self.bytes >= self.max_bytes
            or self.budget.used >= self.budget.limit
        )

    async def wait_for_room(self) -> None:
        """Return once this peer may be read again."""
        while self.full and not self._closed:
            await self.budget.wait_released()

    async def get(self) -> tuple[Item, int]:
        """The next item and its size (waits while the queue is empty)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def handled(self, size: int) -> None:
        """An item was handled: stop counting its bytes and wake a paused reader."""
        if not self._closed:
            self.bytes -= size
            self.budget.release(size)

    def close(self) -> None:
        """Drop everything and stop counting it (the connection is closing)."""
        if not self._closed:
            self._closed = True
            self._items.clear()
            self.budget.release(self.bytes)
            self.bytes = 0


@dataclass(frozen=True)
class QueueBudgets:
    """The node-wide send and receive budgets every peer of a `PeerManager` shares."""

    send: ByteBudget
    """Bytes queued or being written to all peers."""
    receive: ByteBudget
    """Bytes read from all peers and not yet handled."""
