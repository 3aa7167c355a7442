"""Transactions gossiped by peers: a queue bounded in bytes, and what each rejection costs
the peer that sent it (PROTOCOL R32; issue 13; docs/security.md).

A peer's `txs` messages wait in `ReceivedQueue` until the admission task takes them, in
arrival order. The queue holds at most `per_peer_bytes` of one peer and `total_bytes` of
all peers (each transaction counted with `ITEM_OVERHEAD` for the objects that hold it);
a message beyond is dropped and costs its peer `DROPPED_MESSAGE_PENALTY` (an honest peer
gossips again what it admits next; an attacker cannot grow the queue).

Every gossiped transaction admission refuses costs its peer `GOSSIP_PENALTIES[code]`,
in proportion to the work it made this node do and to how surely no honest node would
relay it: a bad signature (a signature check, ~100 µs, and never relayed by an honest
node) costs most; bytes that do not decode or name another chain less; a fee below
`min_fee` little; a stale nonce or an unpayable fee almost nothing (checked before the
signature, and an honest peer a block ahead sends them; not charged at all while this
node is syncing, when its own stale state refuses them); a duplicate or a full mempool
nothing (every honest peer relays every transaction, and honest peers hit it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

ITEM_OVERHEAD = 64
"""Bytes counted per queued transaction on top of its length (the objects holding it)."""
DROPPED_MESSAGE_PENALTY = 0.5
"""Score a peer loses when its `txs` message is dropped because its queue is full."""
GOSSIP_PENALTIES: dict[str, float] = {
    "bad_signature": 10.0,
    "malformed": 5.0,
    "tx_too_large": 5.0,
    "wrong_chain": 5.0,
    "invalid_field": 2.0,
    "unknown_type": 2.0,
    "fee_too_low": 1.0,
    "bad_nonce": 0.05,
    "insufficient_funds": 0.05,
    "duplicate": 0.0,
    "mempool_full": 0.0,
}
"""Score a peer loses per gossiped transaction refused with each R12 code (R32)."""
STALE_STATE_CODES = frozenset({"bad_nonce", "insufficient_funds"})
"""Codes that this node's own stale state can cause: not charged while it is syncing."""


def penalty_of(code: str, syncing: bool = False) -> float:
    """The score cost of one gossiped transaction refused with `code` (0 for a code not
    listed, and for a stale nonce or unpayable fee while this node is `syncing`: it is
    behind, so its own state may be what refuses them)."""
    if syncing and code in STALE_STATE_CODES:
        return 0.0
    return GOSSIP_PENALTIES.get(code, 0.0)


def message_bytes(body: Sequence[bytes]) -> int:
    """The bytes a `txs` message holds in the queue (its transactions and their overhead)."""
    return sum(len(raw) for raw in body) + ITEM_OVERHEAD * len(body)


class ReceivedQueue:
    """Gossiped `txs` messages waiting for admission, in arrival order, bounded in bytes
    per peer and in total."""

    def __init__(self, per_peer_bytes: int, total_bytes: int) -> None:
        self.per_peer_bytes = per_peer_bytes
        """Most bytes queued for one peer (a message to an empty peer queue is always taken
        if the total allows it, so a frame larger than this still gets in alone)."""
        self.total_bytes = total_bytes
        """Most bytes queued for all peers (a message is always taken into an empty queue)."""
        self._messages: deque[tuple[bytes, list[bytes], int]] = deque()
        self._by_peer: dict[bytes, int] = {}
        self._queued = 0

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def queued_bytes(self) -> int:
        """Bytes queued or being admitted, all peers."""
        return self._queued

    def bytes_of(self, peer: bytes) -> int:
        """Bytes queued or being admitted for `peer`."""
        return self._by_peer.get(peer, 0)

    def put(self, peer: bytes, body: list[bytes]) -> bool:
        """Queue `peer`'s message; False (nothing queued) if it is over a budget."""
        size = message_bytes(body)
        held = self._by_peer.get(peer, 0)
        if (held and held + size > self.per_peer_bytes) or (self._queued and self._queued + size > self.total_bytes):
            return False
        self._messages.append((peer, body, size))
        self._by_peer[peer] = held + size
        self._queued += size
        return True

    def take(self) -> tuple[bytes, list[bytes], int] | None:
        """The oldest message (peer, body, size), or None; its bytes stay counted until `done`."""
        return self._messages.popleft() if self._messages else None

    def done(self, peer: bytes, size: int) -> None:
        """A message taken is admitted: its bytes no longer count."""
        self._queued -= size
        held = self._by_peer.get(peer, 0) - size
        if held > 0:
            self._by_peer[peer] = held
        else:
            self._by_peer.pop(peer, None)

    def clear(self) -> None:
        """Forget every waiting message (the node stops)."""
        while self._messages:
            peer, _, size = self._messages.popleft()
            self.done(peer, size)
