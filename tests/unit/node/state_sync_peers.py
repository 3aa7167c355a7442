"""Peers in-process for the state-sync tests: a real snapshot of a real chain, served by
fake peers that are honest or hostile in one chosen way, and a restorer that records.

`Snapshot.of(chain)` takes the state of a real ChainStore (tests/unit/node/snapshot_chain.py)
at its head: the manifest, the chunks, the head's canonical header and commit. `Network`
is the `send` of a StateSync: each request is answered by the addressed `FakePeer` on the
next loop turn (or never, if it is silent), through `StateSync.receive`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.primitives import codec
from marketplace_tx.rules.snapshot_tree import ChunkTree
from marketplace_tx.rules.snapshots import Manifest, encode_chunk, make_manifest, split_chunks
from node.storage import STATE, ChainStore


@dataclass(frozen=True)
class Snapshot:
    """A snapshot of a store's head state, with what a peer serves about it."""

    manifest: Manifest
    """The manifest (R39)."""
    chunks: tuple[bytes, ...]
    """The canonical chunk bytes, by index."""
    header: bytes
    """The canonical header at the snapshot height."""
    commit: bytes
    """The canonical commit that finalized it."""

    @classmethod
    def of(cls, store: ChainStore, depth: int) -> Snapshot:
        """The snapshot of `store`'s head state split at `depth`."""
        tip = store.head()
        assert tip is not None
        entries = [(key[len(STATE):], value) for key, value in store.db.iterator(prefix=STATE)]
        manifest = make_manifest(entries, depth, tip.height, tip.state_root)
        chunks = tuple(encode_chunk(chunk) for chunk in split_chunks(entries, depth))
        block = store.block(tip.height)
        commit = store.commit(tip.height)
        assert block is not None and commit is not None
        return cls(manifest, chunks, codec.encode(block.header.to_map()), commit.encode())


@dataclass
class FakePeer:
    """A peer serving one snapshot; `fault` makes it hostile in one way."""

    snapshot: Snapshot
    """What it serves."""
    fault: str | None = None
    """None, `corrupt_chunk`, `wrong_manifest`, `bad_header`, `endless_changes`, `silent_manifest`,
    `silent_chunks`, `silent`."""
    offers: list[dict[str, Any]] | None = None
    """The `snapshots` body's list (default: its snapshot)."""
    chunk_requests: list[int] = field(default_factory=list)
    """The chunk indexes it was asked for."""

    def answer(self, kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The answer to one request, or None (silent)."""
        snapshot, manifest = self.snapshot, self.snapshot.manifest
        if self.fault == "silent":
            return None
        if kind == "snapshots_request":
            offers = self.offers if self.offers is not None else [
                {"chunk_depth": manifest.chunk_depth, "chunks": len(manifest.chunks), "height": manifest.height}]
            return "snapshots", {"snapshots": offers}
        if kind == "header_request":
            header = snapshot.header
            if self.fault == "bad_header":
                header = header[:-3] + bytes(3)  # not what the validators signed
            return "header", {"commit": snapshot.commit, "header": header, "height": body["height"]}
        if kind == "light_changes_request":
            if self.fault == "endless_changes":  # one height a page, forever
                return "light_changes", {"changes": [], "next": body["after"] + 1}
            return "light_changes", {"changes": []}
        if kind == "manifest_request":
            if self.fault == "silent_manifest":
                return None
            served = manifest
            if self.fault == "wrong_manifest":
                served = Manifest(manifest.chunk_depth, manifest.chunks, manifest.height, bytes(32))
            return "manifest", {"chunk_depth": body["chunk_depth"], "height": body["height"],
                                "manifest": served.encode()}
        if kind == "chunk_request":
            index = body["index"]
            self.chunk_requests.append(index)
            if self.fault == "silent_chunks":
                return None
            raw = snapshot.chunks[index]
            if self.fault == "corrupt_chunk":
                raw = encode_chunk([])  # wrong count (or hash, for an empty chunk's neighbour)
                if snapshot.manifest.chunks[index].count == 0:
                    raw = encode_chunk([(b"a" + bytes(32), b"x")])
            return "chunk", {"chunk": raw, "chunk_depth": body["chunk_depth"], "height": body["height"],
                             "index": index}
        raise AssertionError(f"unexpected request {kind}")


class Network:
    """`send` for a StateSync: requests go to fake peers, answers come back next turn."""

    def __init__(self, peers: dict[bytes, FakePeer]) -> None:
        self.peers = peers
        """The fake peers by node address."""
        self.receive: Any = None
        """`StateSync.receive`, set once the StateSync exists."""
        self.sent: list[tuple[bytes, str, dict[str, Any]]] = []
        """Every request sent."""

    def send(self, peer: bytes, kind: str, body: Any) -> bool:
        """Queue a request to a fake peer; False if there is no such peer."""
        target = self.peers.get(peer)
        if target is None:
            return False
        self.sent.append((peer, kind, body))
        answer = target.answer(kind, body)
        if answer is not None:
            asyncio.get_running_loop().call_soon(self.receive, peer, *answer)
        return True

    def connected(self) -> list[bytes]:
        """Every fake peer."""
        return list(self.peers)


class Penalties:
    """`PeerActions` that records penalties."""

    def __init__(self) -> None:
        self.given: list[tuple[bytes, float, str]] = []
        """(peer, penalty, reason) in order."""

    def penalize(self, peer: bytes, penalty: float, reason: str) -> None:
        """Record one penalty."""
        self.given.append((peer, penalty, reason))

    def of(self, peer: bytes) -> list[float]:
        """The penalties `peer` got."""
        return [penalty for who, penalty, _ in self.given if who == peer]

    def relay(self, peer: bytes, kind: str, body: Any) -> None:
        """Unused."""

    def maybe_sync(self, peer: bytes, height: int) -> None:
        """Unused."""

    def stream(self, peer: bytes, producer: Any) -> bool:
        """Unused."""
        return False


@dataclass
class RecordingRestore:
    """A restorer that keeps what it is given (no database)."""

    pending_progress: Any = None
    """What `pending` returns (a resumed restore)."""
    begun: list[Manifest] = field(default_factory=list)
    """Manifests `begin` was called with."""
    written: dict[int, ChunkTree] = field(default_factory=dict)
    """Chunks written, by index."""
    finished: bool = False
    """True once `finish` was called."""
    abandoned: bool = False
    """True once `abandon` was called."""
    change_points: tuple[ChangePoint, ...] = ()
    """The change points `begin` got."""

    def pending(self) -> Any:
        """The interrupted restore, if any."""
        return self.pending_progress

    def begin(self, manifest: Manifest, header: bytes, commit: bytes, change_points: Any) -> None:
        """Record a new restore."""
        self.begun.append(manifest)
        self.written.clear()
        self.change_points = tuple(change_points)
        self.pending_progress = None

    def write_chunk(self, index: int, tree: ChunkTree) -> None:
        """Record one chunk."""
        self.written[index] = tree

    def finish(self) -> None:
        """Record the end."""
        self.finished = True

    def abandon(self, genesis: Any) -> None:
        """Record giving up."""
        self.abandoned = True
        self.pending_progress = None
