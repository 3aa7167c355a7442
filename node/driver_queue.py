"""The consensus driver's queue of jobs: bounded for peers, never for the node itself.

The driver (node/consensus_driver.py) runs its jobs one at a time on one task. They
come from two places:

- **the node itself**: timeouts, the next height, block sync's stored blocks, work
  notifications (`put_own`). These are few, never dropped and never wait: the lane is
  not bounded.
- **peers**: their verified proposals, votes and evidence (`put`). Each lane of peer
  jobs is bounded by count and by bytes (`DRIVER_QUEUE_MESSAGES`, `DRIVER_QUEUE_BYTES`);
  when it is full, `put` waits (back-pressure): the peer's dispatch awaits it, its
  inbox fills, and p2p/peer.py stops reading from its socket, instead of the queue
  growing. A job larger than the byte bound alone is let in when its lane is empty.

`get` serves the node's own jobs first, then the current height's proposals and votes
(`CURRENT`), then the rest (`OTHER`: evidence), so that junk never delays the votes
that decide a block.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Job = Callable[[], Awaitable[None] | None]
"""Work run on the driver's task, one job after the other."""

DRIVER_QUEUE_MESSAGES = 1_000
"""Most peer jobs waiting in one lane."""
DRIVER_QUEUE_BYTES = 8 * 1024 * 1024
"""Most bytes of peer messages (their wire size) waiting in one lane."""

CURRENT = "current"
"""The lane of the current height's proposals and votes (served first among peers' jobs)."""
OTHER = "other"
"""The lane of every other peer job (evidence)."""


@dataclass
class _Lane:
    """Peer jobs of one priority, with what they hold."""

    jobs: deque[tuple[Job, int]] = field(default_factory=deque)
    """(job, size in bytes), in arrival order."""
    held_bytes: int = 0
    """The sum of the sizes of `jobs`."""
    space: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever a job left the lane (waiting `put`s look again)."""


class DriverQueue:
    """The driver's jobs: the node's own (unbounded) and peers' (bounded, back-pressure)."""

    def __init__(self, max_messages: int = DRIVER_QUEUE_MESSAGES, max_bytes: int = DRIVER_QUEUE_BYTES) -> None:
        self.max_messages = max_messages
        """Most jobs waiting in one peer lane."""
        self.max_bytes = max_bytes
        """Most bytes waiting in one peer lane."""
        self._own: deque[Job] = deque()
        self._lanes = {CURRENT: _Lane(), OTHER: _Lane()}
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._own) + sum(len(lane.jobs) for lane in self._lanes.values())

    def held_bytes(self, lane: str) -> int:
        """Bytes of peer messages waiting in `lane`."""
        return self._lanes[lane].held_bytes

    def waiting(self, lane: str) -> int:
        """Peer jobs waiting in `lane`."""
        return len(self._lanes[lane].jobs)

    def put_own(self, job: Job) -> None:
        """Queue one of the node's own jobs: never refused, never waits (dropped once closed)."""
        if not self._closed:
            self._own.append(job)
            self._ready.set()

    def _fits(self, lane: _Lane, size: int) -> bool:
        if not lane.jobs:
            return True  # one job larger than the byte bound still gets through alone
        return len(lane.jobs) < self.max_messages and lane.held_bytes + size <= self.max_bytes

    async def put(self, job: Job, size: int, lane: str = CURRENT) -> bool:
        """Queue a peer's job of `size` bytes, waiting while `lane` is full; False if the
        queue was closed (the job is dropped)."""
        queue = self._lanes[lane]
        while not self._closed and not self._fits(queue, size):
            queue.space.clear()
            await queue.space.wait()
        if self._closed:
            return False
        queue.jobs.append((job, size))
        queue.held_bytes += size
        self._ready.set()
        return True

    async def get(self) -> Job | None:
        """The next job (own first, then `CURRENT`, then `OTHER`); None once closed."""
        while not self._closed:
            if self._own:
                return self._own.popleft()
            for queue in self._lanes.values():
                if queue.jobs:
                    job, size = queue.jobs.popleft()
                    queue.held_bytes -= size
                    queue.space.set()
                    return job
            self._ready.clear()
            await self._ready.wait()
        return None

    def close(self) -> None:
        """Stop: `get` answers None, waiting `put`s give up, jobs left are dropped."""
        self._closed = True
        self._own.clear()
        self._ready.set()
        for queue in self._lanes.values():
            queue.jobs.clear()
            queue.held_bytes = 0
            queue.space.set()
