"""Serving `block_request`s: cheap checks first, each height once per peer per window,
responses streamed from storage (PROTOCOL R30, R32; issue 13, attack 1).

A request costs one cheap range check and a dictionary lookup before anything else:

1. `height` must be an integer in [1, head]: a request for a height this node never
   claimed costs the peer `PENALTY_BEYOND_HEAD`; a malformed one `PENALTY_MALFORMED`.
2. The same height asked again by the same peer within `REPEAT_WINDOW_S` is answered
   once: the answer is already queued or was written (TCP loses nothing). A repeat
   while the answer still waits is free (an honest requester re-asks after its
   timeout); a repeat after it was produced costs `PENALTY_REPEAT`.
3. The answer is *streamed*: the peer's send queue holds a small producer, and its
   writer reads the block and commit from LevelDB and encodes them only when it is
   that item's turn, charged to the peer's streamed-byte rate before it is written
   (`streamed_bytes_per_s`, p2p/config.py), so no more than one block per peer is ever
   in memory, and only while it is written. At most `max_streamed_per_peer` answers
   wait per peer; a request beyond them costs `PENALTY_QUEUE_FULL`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from node.peer_actions import PeerActions
from node.storage import ChainStore
from p2p.messages import encode_message

REPEAT_WINDOW_S = 30.0
"""A height served to a peer is not served to it again within this many seconds."""
MAX_REMEMBERED_PER_PEER = 1024
"""Most (height, time) entries remembered per peer for the repeat window (oldest go first)."""
PENALTY_MALFORMED = 10.0
"""Score a peer loses for a `block_request` without an integer height ≥ 1."""
PENALTY_BEYOND_HEAD = 1.0
"""Score a peer loses for asking a height above this node's head (it never claimed it)."""
PENALTY_QUEUE_FULL = 2.0
"""Score a peer loses for a request while `max_streamed_per_peer` answers already wait."""
PENALTY_REPEAT = 1.0
"""Score a peer loses for asking again, within the window, a height it was already sent."""


class _Served:
    """When a height was queued for a peer, and whether its answer was produced yet."""

    __slots__ = ("at", "sent")

    def __init__(self, at: float) -> None:
        self.at = at
        self.sent = False


class BlockServer:
    """Answers peers' `block_request`s from the store."""

    def __init__(
        self, store: ChainStore, peers: PeerActions, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        """The chain the blocks and commits are read from."""
        self.peers = peers
        """Streams answers and charges peers for bad requests (R32)."""
        self._clock = clock
        self._served: dict[bytes, OrderedDict[int, _Served]] = {}
        self.answered = 0
        """Requests answered (queued for streaming)."""
        self.ignored = 0
        """Requests ignored: repeats within the window, heights above the head, no room."""

    def serve(self, peer: bytes, body: Any) -> None:
        """Answer one `block_request {height}` (see the module docstring for the order of checks)."""
        height = body.get("height") if isinstance(body, dict) else None
        if isinstance(height, bool) or not isinstance(height, int) or height < 1:
            self.peers.penalize(peer, PENALTY_MALFORMED, "block_request malformed")
            return
        if height > self.store.head().height:
            self.ignored += 1
            self.peers.penalize(peer, PENALTY_BEYOND_HEAD, f"block_request for {height}, above our head")
            return
        served = self._served.setdefault(peer, OrderedDict())
        now = self._clock()
        while served and next(iter(served.values())).at <= now - REPEAT_WINDOW_S:
            served.popitem(last=False)
        earlier = served.get(height)
        if earlier is not None:
            self.ignored += 1
            if earlier.sent:
                self.peers.penalize(peer, PENALTY_REPEAT, f"block_request for {height} again, already sent")
            return
        record = _Served(now)

        def produce() -> bytes | None:
            record.sent = True
            return self.response(height)

        if not self.peers.stream(peer, produce):
            self.ignored += 1
            self.peers.penalize(peer, PENALTY_QUEUE_FULL, "block_request while its answers wait")
            return
        self.answered += 1
        served[height] = record
        while len(served) > MAX_REMEMBERED_PER_PEER:
            served.popitem(last=False)

    def response(self, height: int) -> bytes | None:
        """The encoded `block_response` for `height`, read now (None if not stored)."""
        block = self.store.block_bytes(height)
        commit = self.store.commit(height)
        if block is None or commit is None:
            return None
        return encode_message("block_response", {"height": height, "block": block, "commit": commit.encode()})

    def forget(self, peer: bytes) -> None:
        """A peer disconnected: forget what it was served."""
        self._served.pop(peer, None)
