"""The seen-cache of gossip: nothing delivered twice, nothing relayed twice (R32).

For every gossip message (by SHA-256 of its envelope bytes) it remembers which peers
already have it: the ones that sent it to us and the ones we sent it to. A message
arriving a second time is dropped; a broadcast skips every peer that has it.
"""

from __future__ import annotations

from collections import OrderedDict


class SeenCache:
    """A bounded, least-recently-used map `message hash → peers that hold it`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        """Most message hashes remembered."""
        self._holders: OrderedDict[bytes, set[bytes]] = OrderedDict()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._holders

    def __len__(self) -> int:
        return len(self._holders)

    def _entry(self, digest: bytes) -> set[bytes]:
        holders = self._holders.get(digest)
        if holders is None:
            holders = self._holders[digest] = set()
            while len(self._holders) > self.capacity:
                self._holders.popitem(last=False)
        else:
            self._holders.move_to_end(digest)
        return holders

    def received(self, digest: bytes, peer: bytes) -> bool:
        """Record that `peer` sent the message; True iff this is its first sight."""
        first = digest not in self._holders
        self._entry(digest).add(peer)
        return first

    def recipients(self, digest: bytes, peers: list[bytes]) -> list[bytes]:
        """Which of `peers` still lack the message; they are recorded as holding it now."""
        holders = self._entry(digest)
        missing = [peer for peer in peers if peer not in holders]
        holders.update(missing)
        return missing

    def forget(self, digest: bytes) -> None:
        """Forget a message: its next copy counts as a first sight."""
        self._holders.pop(digest, None)

    def holders(self, digest: bytes) -> frozenset[bytes]:
        """Peers known to hold the message."""
        return frozenset(self._holders.get(digest, ()))
