"""A `PeerActions` for serving tests: streams into a list (up to `room` waiting items per
peer), records what is sent and every penalty, and produces the answers as a writer would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p2p.messages import decode_message


class RecordingPeers:
    """Streams into a list (up to `room` waiting items per peer) and records sends and penalties."""

    def __init__(self, room: int = 64) -> None:
        self.room = room
        """Most items that may wait in one peer's stream."""
        self.streamed: list[tuple[bytes, Callable[[], bytes | None]]] = []
        """(peer, producer) in the order queued."""
        self.sent: list[tuple[bytes, str, Any]] = []
        """(peer, kind, body) sent directly."""
        self.penalties: list[tuple[bytes, float, str]] = []
        """(peer, penalty, reason) in the order given."""

    def send(self, peer: bytes, kind: str, body: Any) -> bool:
        self.sent.append((peer, kind, body))
        return True

    def stream(self, peer: bytes, producer: Callable[[], bytes | None]) -> bool:
        if sum(1 for owner, _ in self.streamed if owner == peer) >= self.room:
            return False
        self.streamed.append((peer, producer))
        return True

    def penalize(self, peer: bytes, penalty: float, reason: str) -> None:
        self.penalties.append((peer, penalty, reason))

    def answer_count(self, peer: bytes, sent_kind: str = "block_response") -> int:
        """Answers queued for `peer`: streamed ones and those of `sent_kind` sent directly."""
        return sum(1 for owner, _ in self.streamed if owner == peer) + sum(
            1 for owner, kind, _ in self.sent if owner == peer and kind == sent_kind)

    def answers(self, peer: bytes) -> list[tuple[str, Any]]:
        """Produce (as the writer would) every answer streamed to `peer`: (kind, body)."""
        found = []
        for owner, producer in self.streamed:
            if owner == peer:
                message = decode_message(producer())  # type: ignore[arg-type]
                found.append((message.kind, message.body))
        return found
