"""Which chunk to ask of which peer, and what to do with what comes back (PROTOCOL R39).

Pure bookkeeping, no I/O and no clock of its own (node/state_sync.py sends the requests,
feeds the answers and the time). Bounds:

- at most `fetchers` chunks are in flight, waiting to be checked or being written at
  once: a request's slot is freed only when its chunk is written (or re-routed);
- the chunks held waiting (received, not yet written) take at most `budget_bytes`
  (`chunk_fetchers` × 1 MiB) — one chunk is always let in when nothing waits, so a
  larger honest chunk (R39 allows 4 MiB) still makes progress; an arrival that does not
  fit is dropped unpenalized and asked again later;
- an answer for a chunk never asked of that peer is refused (`UNSOLICITED`), before it is
  kept.

Routing: the lowest missing index first, to the usable peer with the fewest chunks in
flight that has not already failed to serve that index in time. A peer whose chunk
fails against the manifest it served itself is never asked again (R39); once chunks from
two different peers have failed, the manifest is to be dropped (`bad` returns True).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

PENDING_BYTES_PER_FETCHER = 1 << 20
"""Bytes of received chunks held per `chunk_fetchers` slot: the budget is fetchers × 1 MiB."""
BAD_PEERS_TO_DROP_MANIFEST = 2
"""Chunks from this many different peers failing against one manifest drop it (R39)."""


class Arrival(Enum):
    """What `ChunkFetcher.arrived` did with a chunk answer."""

    ACCEPTED = "accepted"
    """Kept, waiting to be checked and written."""
    UNSOLICITED = "unsolicited"
    """Never asked of that peer: refused (the peer is charged)."""
    DUPLICATE = "duplicate"
    """Asked, but already received from someone (a late answer after a re-route): ignored."""
    NO_ROOM = "no_room"
    """Would pass the byte budget: dropped, asked again later (not the peer's fault)."""
    FROM_BAD_PEER = "from_bad_peer"
    """From a peer already found sending a bad chunk: dropped unchecked (charged once only)."""


@dataclass(frozen=True)
class Request:
    """A chunk asked of a peer."""

    peer: bytes
    """Who was asked."""
    sent_at: float
    """When (the caller's monotonic seconds)."""


@dataclass(frozen=True)
class Received:
    """A chunk that arrived, to check (R39) and write."""

    index: int
    """The chunk's index in the manifest."""
    peer: bytes
    """Who sent it."""
    raw: bytes
    """The chunk's bytes as received."""


class ChunkFetcher:
    """The fetch of one manifest's missing chunks from the peers that served that manifest."""

    def __init__(self, missing: Iterable[int], peers: Iterable[bytes], fetchers: int, timeout_s: float,
                 budget_bytes: int | None = None) -> None:
        self._missing = sorted(set(missing))
        heapq.heapify(self._missing)
        self._remaining = set(self._missing)
        self.peers: set[bytes] = set(peers)
        """Peers chunks may still be asked of (served the manifest, not found bad, connected)."""
        self.fetchers = max(1, fetchers)
        """Slots: chunks in flight + waiting + being written."""
        self.timeout_s = timeout_s
        """Seconds an answer may take before the chunk is asked elsewhere."""
        self.budget_bytes = budget_bytes if budget_bytes is not None else self.fetchers * PENDING_BYTES_PER_FETCHER
        """Bytes of received chunks held at once (see the module docstring)."""
        self.in_flight: dict[int, Request] = {}
        """Chunks asked and not answered yet."""
        self._asked: dict[int, set[bytes]] = {}
        self._slow: dict[int, set[bytes]] = {}
        self._waiting: dict[int, Received] = {}
        self._taken: set[int] = set()
        self.waiting_bytes = 0
        """Bytes of the chunks received and not yet written (`waiting` and taken)."""
        self._taken_bytes: dict[int, int] = {}
        self.bad_peers: set[bytes] = set()
        """Peers whose chunk failed against the manifest (never asked again)."""
        self.not_serving: set[bytes] = set()
        """Peers that answered a chunk request without the chunk (they lost the snapshot)."""

    # --- state ------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Every chunk was written."""
        return not self._remaining

    @property
    def stuck(self) -> bool:
        """Chunks remain but no peer is left to ask and nothing is under way."""
        return bool(self._remaining) and not self.peers and not self.in_flight and not self._waiting \
            and not self._taken

    @property
    def slots_used(self) -> int:
        """Chunks in flight, waiting or being written."""
        return len(self.in_flight) + len(self._waiting) + len(self._taken)

    # --- requests -----------------------------------------------------------------------

    def next_requests(self, now: float) -> list[tuple[int, bytes]]:
        """The (index, peer) requests to send now, recorded as sent (`unsent` undoes one)."""
        requests: list[tuple[int, bytes]] = []
        skipped: list[int] = []
        while self._missing and self.slots_used < self.fetchers and self.waiting_bytes < self.budget_bytes:
            index = heapq.heappop(self._missing)
            if index not in self._remaining or index in self.in_flight or index in self._waiting \
                    or index in self._taken:
                continue
            peer = self._route(index)
            if peer is None:
                skipped.append(index)
                continue
            self.in_flight[index] = Request(peer, now)
            self._asked.setdefault(index, set()).add(peer)
            requests.append((index, peer))
        for index in skipped:
            heapq.heappush(self._missing, index)
        return requests

    def _route(self, index: int) -> bytes | None:
        """The least loaded usable peer for `index`, preferring one that was not slow on it."""
        if not self.peers:
            return None
        load = {peer: 0 for peer in self.peers}
        for request in self.in_flight.values():
            if request.peer in load:
                load[request.peer] += 1
        slow = self._slow.get(index, set())
        fresh = [peer for peer in self.peers if peer not in slow]
        return min(fresh or list(self.peers), key=lambda peer: (load[peer], peer))

    def unsent(self, index: int, peer: bytes) -> None:
        """The request could not be queued to `peer` (gone or its queue full): ask again later."""
        request = self.in_flight.get(index)
        if request is not None and request.peer == peer:
            del self.in_flight[index]
            self._slow.setdefault(index, set()).add(peer)
            heapq.heappush(self._missing, index)

    def expired(self, now: float) -> list[tuple[int, bytes]]:
        """Requests unanswered for `timeout_s`: taken back to be re-routed; (index, silent peer)."""
        late = [(index, request.peer) for index, request in self.in_flight.items()
                if now - request.sent_at >= self.timeout_s]
        for index, peer in late:
            del self.in_flight[index]
            self._slow.setdefault(index, set()).add(peer)
            heapq.heappush(self._missing, index)
        return late

    def next_deadline(self) -> float | None:
        """When the oldest request in flight times out, or None."""
        if not self.in_flight:
            return None
        return min(request.sent_at for request in self.in_flight.values()) + self.timeout_s

    # --- answers ----------------------------------------------------------------------

    def asked(self, index: int, peer: bytes) -> bool:
        """True if `index` was ever asked of `peer` in this fetch."""
        return peer in self._asked.get(index, ())

    def arrived(self, peer: bytes, index: int, raw: bytes) -> Arrival:
        """A chunk answer with bytes: keep it for checking, or say why not."""
        if not self.asked(index, peer):
            return Arrival.UNSOLICITED
        if peer in self.bad_peers:
            return Arrival.FROM_BAD_PEER
        if index not in self._remaining or index in self._waiting or index in self._taken:
            return Arrival.DUPLICATE
        if self._waiting or self._taken:
            if self.waiting_bytes + len(raw) > self.budget_bytes:
                self._give_back(index)
                return Arrival.NO_ROOM
        self.in_flight.pop(index, None)  # whoever it was asked of last: answered now
        self._waiting[index] = Received(index, peer, raw)
        self.waiting_bytes += len(raw)
        return Arrival.ACCEPTED

    def not_served(self, peer: bytes, index: int) -> None:
        """`peer` answered without the chunk (it no longer has the snapshot): stop asking it."""
        self.peers.discard(peer)
        self.not_serving.add(peer)
        request = self.in_flight.get(index)
        if request is not None and request.peer == peer:
            self._give_back(index)

    def _give_back(self, index: int) -> None:
        self.in_flight.pop(index, None)
        heapq.heappush(self._missing, index)

    def take(self) -> Received | None:
        """The lowest waiting chunk, to check and write (its bytes stay counted until `written`)."""
        if not self._waiting:
            return None
        index = min(self._waiting)
        received = self._waiting.pop(index)
        self._taken.add(index)
        self._taken_bytes[index] = len(received.raw)
        return received

    def written(self, index: int) -> None:
        """The chunk checked out and is stored."""
        self._taken.discard(index)
        self.waiting_bytes -= self._taken_bytes.pop(index, 0)
        self._remaining.discard(index)

    def bad(self, index: int, peer: bytes) -> bool:
        """The chunk from `peer` failed against the manifest (R39): never ask that peer again,
        ask the chunk elsewhere. True once chunks from two different peers have failed (the
        manifest is then dropped)."""
        if index in self._taken:
            self._taken.discard(index)
            self.waiting_bytes -= self._taken_bytes.pop(index, 0)
        elif index in self._waiting:
            self.waiting_bytes -= len(self._waiting.pop(index).raw)
        self.bad_peers.add(peer)
        self.peer_gone(peer)
        for other in [other for other, received in self._waiting.items() if received.peer == peer]:
            self.waiting_bytes -= len(self._waiting.pop(other).raw)  # unchecked: it is not believed
            heapq.heappush(self._missing, other)
        if index in self._remaining:
            heapq.heappush(self._missing, index)
        return len(self.bad_peers) >= BAD_PEERS_TO_DROP_MANIFEST

    def peer_gone(self, peer: bytes) -> None:
        """`peer` disconnected or is not to be asked again: its requests are re-routed."""
        self.peers.discard(peer)
        for index in [index for index, request in self.in_flight.items() if request.peer == peer]:
            self._give_back(index)
