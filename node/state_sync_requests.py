"""A joining node's requests to peers and the answers they wait for (PROTOCOL R32, R39).

Every answer must match a request this node sent to that peer: (peer, answer kind, key),
the key naming what was asked (a height, an `after`, a (height, chunk_depth) pair). An
answer that matches nothing this node ever asked is unsolicited (the caller charges the
peer); a late answer to a request already given up on is ignored, unpunished. At most
one request per (peer, kind, key) waits at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from node.peer_actions import Send

Slot = tuple[bytes, str, Any]
"""(peer, answer kind, key)."""


class Requests:
    """Requests in flight and every request sent, for matching answers."""

    def __init__(self, send: Send, timeout_s: float,
                 on_timeout: Callable[[bytes, str], None] = lambda peer, kind: None) -> None:
        self.send = send
        """Send one message to one peer."""
        self.timeout_s = timeout_s
        """Seconds an answer may take."""
        self.on_timeout = on_timeout
        """Called with (peer, request kind) when a request goes unanswered for `timeout_s`."""
        self._waiting: dict[Slot, asyncio.Future[Any]] = {}
        self._asked: set[Slot] = set()

    def note(self, peer: bytes, answer_kind: str, key: Any) -> None:
        """A request was sent without waiting on it here (chunks: node/chunk_fetcher.py)."""
        self._asked.add((peer, answer_kind, key))

    def was_asked(self, peer: bytes, answer_kind: str, key: Any) -> bool:
        """True if this node ever sent `peer` the request that `key` answers."""
        return (peer, answer_kind, key) in self._asked

    async def ask(self, peer: bytes, kind: str, body: dict[str, Any], answer_kind: str, key: Any) -> Any:
        """Send a request and wait for its answer: None if not sent, the peer left, or it timed out."""
        slot = (peer, answer_kind, key)
        if slot in self._waiting or not self.send(peer, kind, body):
            return None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[slot] = future
        self._asked.add(slot)
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            self.on_timeout(peer, kind)
            return None
        finally:
            if self._waiting.get(slot) is future:
                del self._waiting[slot]

    def resolve(self, peer: bytes, answer_kind: str, key: Any, answer: Any) -> bool:
        """Hand an answer to its waiting request; False if it is unsolicited (never asked)."""
        future = self._waiting.pop((peer, answer_kind, key), None)
        if future is None:
            return self.was_asked(peer, answer_kind, key)  # late: ignored, not charged
        if not future.done():
            future.set_result(answer)
        return True

    def waiting_key(self, peer: bytes, answer_kind: str) -> Any:
        """The key of `peer`'s waiting request of `answer_kind` (answers that do not name it), or None."""
        for slot_peer, slot_kind, key in self._waiting:
            if slot_peer == peer and slot_kind == answer_kind:
                return key
        return None

    def peer_gone(self, peer: bytes) -> None:
        """`peer` left: its waiting requests end with None."""
        for slot in [slot for slot in self._waiting if slot[0] == peer]:
            future = self._waiting.pop(slot)
            if not future.done():
                future.set_result(None)
