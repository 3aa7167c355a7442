"""Verified consensus messages of the next height, waiting until the node gets there.

A validator that decided a block moves on while this node may still be collecting
the precommits of it; the proposal and votes it sends for the next height are kept
here, then fed to the core when this node starts that height (`take`).

Only what cannot cost this node much is kept (node/consensus_intake.py checks it
before `keep`):

- a height in the **window** `head + 1 … head + FUTURE_HEIGHTS_AHEAD` (head: the last
  stored block), the heights whose validator set is already known (a change decided
  in block H signs from H + 2, R34), signed by a validator of that height (the
  proposer of its round, for a proposal), the signature checked **before** it is kept;
- or, for a node that fell behind, a height up to `head + CATCH_UP_HEIGHTS_AHEAD` (or
  the height block sync catches up to + 2), signed by a member of the projected set
  (the best known), checked again against the real set when its height starts;
- within a **byte budget** per peer that sent it and in total (`FutureBudget`): its
  wire size plus `ENTRY_OVERHEAD_BYTES` for the bookkeeping.

A message that does not fit is dropped, and the p2p seen-cache is told to forget it
(`forget_seen`), so that an honest copy arriving later is taken again instead of
being taken for a duplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

FUTURE_HEIGHTS_AHEAD = 2
"""Messages are checked against the exact set of their height up to the last stored
block's height + this (the node decides head + 1; the set of head + 2 is known, R34)."""
CATCH_UP_HEIGHTS_AHEAD = 100
"""Beyond head + 2, messages up to head + this (or up to the height block sync catches
up to + 2) are checked against the projected set and kept, so that a node that fell
behind does not lose the round it will join (the seen-cache would not let them in again)."""
FUTURE_SLACK_BYTES = 1024 * 1024
"""Per peer, room beyond one largest proposal for the votes of the next height."""
ENTRY_OVERHEAD_BYTES = 512
"""Bytes counted per kept message beyond its wire size (the job and its bookkeeping)."""

FutureJob = Callable[[], Awaitable[None]]
"""The driver's handling of a kept message, run when its height starts."""


@dataclass(frozen=True)
class FutureBudget:
    """How many bytes of future messages are kept, per peer and in total."""

    per_peer_bytes: int
    """Most bytes kept of the messages one peer sent."""
    total_bytes: int
    """Most bytes kept of all peers' messages."""

    @classmethod
    def for_blocks(cls, max_block_bytes: int) -> FutureBudget:
        """The default: per peer one largest proposal plus `FUTURE_SLACK_BYTES` of votes;
        in total twice that (with 4 MiB blocks: 5 MiB per peer, 10 MiB in all)."""
        per_peer = max_block_bytes + FUTURE_SLACK_BYTES
        return cls(per_peer, 2 * per_peer)


@dataclass(frozen=True)
class _Kept:
    height: int
    peer: bytes
    size: int
    job: FutureJob


class FutureMessages:
    """Verified messages of later heights, within a byte budget per peer and in total."""

    def __init__(self, budget: FutureBudget) -> None:
        self.budget = budget
        """The byte bounds."""
        self._kept: list[_Kept] = []
        self._peer_bytes: dict[bytes, int] = {}
        self._total_bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def total_bytes(self) -> int:
        """Bytes held, bookkeeping included."""
        return self._total_bytes

    def peer_bytes(self, peer: bytes) -> int:
        """Bytes held of the messages `peer` sent."""
        return self._peer_bytes.get(peer, 0)

    def keep(self, height: int, peer: bytes, wire_bytes: int, job: FutureJob) -> bool:
        """Keep a verified message of `height` from `peer`; False (not kept) when the
        peer's budget or the total budget has no room for it."""
        size = wire_bytes + ENTRY_OVERHEAD_BYTES
        held = self._peer_bytes.get(peer, 0)
        if held + size > self.budget.per_peer_bytes or self._total_bytes + size > self.budget.total_bytes:
            return False
        self._kept.append(_Kept(height, peer, size, job))
        self._peer_bytes[peer] = held + size
        self._total_bytes += size
        return True

    def take(self, height: int) -> list[FutureJob]:
        """The jobs kept for `height`, in arrival order; those of lower heights are dropped."""
        due = [entry.job for entry in self._kept if entry.height == height]
        released = [entry for entry in self._kept if entry.height <= height]
        self._kept = [entry for entry in self._kept if entry.height > height]
        for entry in released:
            self._release(entry)
        return due

    def _release(self, entry: _Kept) -> None:
        self._total_bytes -= entry.size
        left = self._peer_bytes[entry.peer] - entry.size
        if left > 0:
            self._peer_bytes[entry.peer] = left
        else:
            del self._peer_bytes[entry.peer]
