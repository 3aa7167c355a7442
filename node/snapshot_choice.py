"""Which snapshot a joining node restores: the peers' offers and their ranking (PROTOCOL R39).

Pure bookkeeping, no I/O (node/state_sync.py sends the requests and feeds the answers):

- `OfferBook` keeps what each connected peer offered in its `snapshots` answer, at most
  `MAX_OFFERS_PER_PEER` entries per peer (a hostile peer cannot grow it), and ranks the
  candidates like CometBFT: the newest height offered by at least two peers first, then
  the others newest first (`candidates`).
- `ManifestVotes` groups the manifest bytes the peers served for one candidate: honest
  manifests of the same (H, d) are identical byte for byte (R39), so the bytes served by
  the most peers win, and the peers that served them are the ones chunks are fetched from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from marketplace_tx.rules.snapshots import MAX_CHUNK_DEPTH

MAX_OFFERS_PER_PEER = 16
"""A `snapshots` answer lists at most this many snapshots (contract); more is malformed."""


@dataclass(frozen=True, order=True)
class SnapshotKey:
    """A snapshot as peers name it: the state after `height`, split at `chunk_depth`."""

    height: int
    """The height whose state the snapshot holds."""
    chunk_depth: int
    """d: 2^d chunks."""


class MalformedOffer(ValueError):
    """A `snapshots` answer that is not `{snapshots: [{chunk_depth, chunks, height}, …]}` within bounds."""


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_offers(body: Any) -> list[SnapshotKey]:
    """The snapshots of a `snapshots` answer; `MalformedOffer` if its shape or bounds are wrong
    (cheap checks only: nothing here is trusted until its header verifies, R37)."""
    snapshots = body.get("snapshots") if isinstance(body, dict) else None
    if not isinstance(snapshots, list) or len(snapshots) > MAX_OFFERS_PER_PEER:
        raise MalformedOffer(f"snapshots must be a list of at most {MAX_OFFERS_PER_PEER} entries")
    offers = []
    for entry in snapshots:
        if not isinstance(entry, dict) or not all(_is_count(entry.get(name)) for name in
                                                  ("height", "chunk_depth", "chunks")):
            raise MalformedOffer("each snapshot is {chunk_depth, chunks, height} of integers ≥ 0")
        depth = entry["chunk_depth"]
        if depth > MAX_CHUNK_DEPTH or entry["chunks"] != 1 << depth or entry["height"] < 1:
            raise MalformedOffer(f"a snapshot of height ≥ 1 has 2^chunk_depth chunks, chunk_depth ≤ {MAX_CHUNK_DEPTH}")
        offers.append(SnapshotKey(entry["height"], depth))
    return offers


class OfferBook:
    """The snapshots each peer offers, bounded per peer, and the candidates they make."""

    def __init__(self) -> None:
        self._offers: dict[bytes, frozenset[SnapshotKey]] = {}
        self._dropped: set[SnapshotKey] = set()
        self._refused: set[tuple[bytes, SnapshotKey]] = set()

    def offer(self, peer: bytes, offers: Iterable[SnapshotKey]) -> None:
        """Replace what `peer` offers (at most `MAX_OFFERS_PER_PEER`, the first kept)."""
        self._offers[peer] = frozenset(list(offers)[:MAX_OFFERS_PER_PEER])

    def offers_of(self, peer: bytes) -> frozenset[SnapshotKey]:
        """What `peer` offers now (empty if nothing)."""
        return self._offers.get(peer, frozenset())

    def forget_peer(self, peer: bytes) -> None:
        """The peer disconnected: its offers are gone."""
        self._offers.pop(peer, None)

    def refuse(self, peer: bytes, key: SnapshotKey) -> None:
        """Do not use `peer` for `key` again (its header, manifest or chunks failed)."""
        self._refused.add((peer, key))

    def drop(self, key: SnapshotKey) -> None:
        """Never choose `key` again (its manifest was dropped, R39)."""
        self._dropped.add(key)

    def offering(self, key: SnapshotKey) -> list[bytes]:
        """The peers offering `key` that were not refused for it, in a stable order."""
        return sorted(peer for peer, offers in self._offers.items()
                      if key in offers and (peer, key) not in self._refused)

    def candidates(self) -> list[SnapshotKey]:
        """Usable snapshots, best first: those offered by ≥ 2 peers newest first, then the
        rest newest first (a height only one peer claims is tried last: it may be a lie)."""
        counts: dict[SnapshotKey, int] = {}
        for peer, offers in self._offers.items():
            for key in offers:
                if key not in self._dropped and (peer, key) not in self._refused:
                    counts[key] = counts.get(key, 0) + 1
        return sorted(counts, key=lambda key: (counts[key] >= 2, key.height, -key.chunk_depth, counts[key]),
                      reverse=True)

    def __len__(self) -> int:
        """How many peers have offered something (possibly nothing)."""
        return len(self._offers)


class ManifestVotes:
    """The manifest bytes served for one snapshot, by peer; identical bytes are one vote each."""

    def __init__(self) -> None:
        self._served: dict[bytes, set[bytes]] = {}

    def served(self, peer: bytes, manifest_bytes: bytes) -> None:
        """`peer` served `manifest_bytes` (already checked against the verified header)."""
        self._served.setdefault(manifest_bytes, set()).add(peer)

    def best(self) -> tuple[bytes, list[bytes]] | None:
        """The bytes served by the most peers (ties: the smaller bytes, deterministic) and
        those peers, sorted; None if no manifest was served."""
        if not self._served:
            return None
        manifest_bytes = min(self._served, key=lambda raw: (-len(self._served[raw]), raw))
        return manifest_bytes, sorted(self._served[manifest_bytes])
