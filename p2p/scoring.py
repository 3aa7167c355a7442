"""Peer scores and the ban list (R32: misbehaving peers lose score, then are banned)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

from p2p.addresses import PeerAddress
from p2p.config import PeerManagerConfig

log = logging.getLogger(__name__)


class ScoreBook:
    """The score of every node address (or IP address) seen recently; it survives reconnections."""

    def __init__(
        self,
        initial: float,
        recovery_per_s: float,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial = initial
        """Score of an unknown peer and the ceiling of recovery."""
        self.recovery_per_s = recovery_per_s
        """Score regained per second."""
        self._capacity = capacity
        self._clock = clock
        self._scores: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def score(self, node_address: Hashable) -> float:
        """The peer's current score, recovery included."""
        entry = self._scores.get(node_address)
        if entry is None:
            return self.initial
        value, updated = entry
        return min(self.initial, value + (self._clock() - updated) * self.recovery_per_s)

    def penalize(self, node_address: Hashable, penalty: float) -> float:
        """Lower the peer's score by `penalty` (≥ 0) and return the new score."""
        value = self.score(node_address) - max(0.0, penalty)
        self._scores[node_address] = (value, self._clock())
        self._scores.move_to_end(node_address)
        while len(self._scores) > self._capacity:
            self._scores.popitem(last=False)
        return value

    def reset(self, node_address: Hashable) -> None:
        """Forget the peer's history (after a ban, it starts afresh)."""
        self._scores.pop(node_address, None)


class BanList:
    """Keys (node addresses, `(host, port)` endpoints) refused until an expiry time."""

    def __init__(self, capacity: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = capacity
        self._clock = clock
        self._until: OrderedDict[Hashable, float] = OrderedDict()

    def ban(self, key: Hashable, duration_s: float) -> None:
        """Refuse `key` for `duration_s` seconds from now."""
        self._until[key] = self._clock() + duration_s
        self._until.move_to_end(key)
        while len(self._until) > self._capacity:
            self._until.popitem(last=False)

    def is_banned(self, key: Hashable) -> bool:
        """True while `key`'s ban has not expired (expired bans are dropped)."""
        until = self._until.get(key)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[key]
            return False
        return True

    def remaining_s(self, key: Hashable) -> float:
        """Seconds left on `key`'s ban (0 if none)."""
        return max(0.0, self._until.get(key, 0.0) - self._clock()) if self.is_banned(key) else 0.0


class Reputation:
    """Scores and bans together: a penalty that drops a score below the threshold bans."""

    def __init__(self, config: PeerManagerConfig) -> None:
        self.scores = ScoreBook(config.initial_score, config.score_recovery_per_s)
        """Every recent peer's score."""
        self.bans = BanList()
        """Banned node addresses and listen endpoints."""
        self._threshold = config.ban_threshold
        self._ban_s = config.ban_duration_s

    def penalize(
        self, address: bytes, penalty: float, reason: str, endpoints: Iterable[Hashable | None] = ()
    ) -> bool:
        """Lower the peer's score; True if this penalty banned it (and its `endpoints`)."""
        score = self.scores.penalize(address, penalty)
        log.info("peer %s loses %g (%s): score %g", address.hex(), penalty, reason, score)
        if score >= self._threshold or self.bans.is_banned(address):
            return False
        for key in (address, *endpoints):
            if key is not None:
                self.bans.ban(key, self._ban_s)
        self.scores.reset(address)
        log.warning("banning %s for %g s: %s", address.hex(), self._ban_s, reason)
        return True

    def is_refused(self, target: PeerAddress) -> bool:
        """True if the target's endpoint or expected node address is banned."""
        if self.bans.is_banned(target.endpoint):
            return True
        return target.node_address is not None and self.bans.is_banned(target.node_address)
