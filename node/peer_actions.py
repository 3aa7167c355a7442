"""What the node's parts may do to peers: penalize, relay, sync from (PROTOCOL R30, R32).

The consensus driver, block sync and admission judge peers' messages; they act on the
peer only through the small `PeerActions` protocol, never through the whole node.
`NetworkPeerActions` is the node's implementation over the `PeerManager`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from p2p.peer_manager import PeerManager

Send = Callable[[bytes, str, Any], bool]
"""Send one message to one peer: `send(peer, kind, body)`; False if it was not sent."""
Broadcast = Callable[[str, Any], Any]
"""Gossip one message to every peer: `broadcast(kind, body)`."""


class PeerActions(Protocol):
    """Consequences of a peer's messages."""

    def penalize(self, peer: bytes, penalty: float, reason: str) -> None:
        """Lower a peer's score for bad data (R32)."""

    def relay(self, peer: bytes, kind: str, body: Any) -> None:
        """Pass a validated consensus message on to every other peer (R32)."""

    def maybe_sync(self, peer: bytes, height: int) -> None:
        """A peer has blocks up to `height`: sync from it if this node is behind (R30)."""

    def stream(self, peer: bytes, producer: Callable[[], bytes | None]) -> bool:
        """Queue a message to one peer that `producer` encodes when it is its turn to be
        written (block responses); False if it was not queued."""


class NetworkPeerActions:
    """`PeerActions` over the P2P layer and block sync."""

    def __init__(
        self, peers: PeerManager, head_height: Callable[[], int], sync_from: Callable[[bytes, int], None]
    ) -> None:
        self.peers = peers
        """The peer-to-peer layer (scores, gossip)."""
        self.head_height = head_height
        """Height of the last final block stored."""
        self.sync_from = sync_from
        """Tell block sync that a peer has blocks up to a height (`BlockSync.peer_height`)."""

    def penalize(self, peer: bytes, penalty: float, reason: str) -> None:
        """Lower a peer's score for bad data (R32)."""
        self.peers.report(peer, penalty, reason)

    def relay(self, peer: bytes, kind: str, body: Any) -> None:
        """Pass a validated consensus message on to every other peer (R32)."""
        self.peers.broadcast(kind, body, exclude=peer)

    def maybe_sync(self, peer: bytes, height: int) -> None:
        """A peer has blocks up to `height`: sync if we are behind (R30). Block sync
        trusts the claim only once the peer delivers a block whose commit verifies."""
        if height > self.head_height():
            self.sync_from(peer, height)

    def stream(self, peer: bytes, producer: Callable[[], bytes | None]) -> bool:
        """Queue a streamed message (p2p/buffers.py); False if it was not queued."""
        return self.peers.send_streamed(peer, producer)
