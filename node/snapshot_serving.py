"""Serving state-sync requests from peers: snapshots, manifests, chunks, change points and
headers (PROTOCOL R32, R37, R39; docs/p2p.md has the bodies).

Every request costs the peer the cheapest checks first, and is answered from disk only
when the peer's send queue reaches it:

1. **shape**: the body is a map whose fields are integers within bounds (`chunk_depth`
   0 … 16, `index` below 2^chunk_depth, `height` ≥ 1, `after` ≥ 0, `limit` 1 … 32);
   anything else costs `PENALTY_MALFORMED` and is not answered.
2. **repeat**: the same request from the same peer within `REPEAT_WINDOW_S` is answered
   once (its answer is queued or was written; TCP loses nothing), free of charge; at most
   `MAX_REMEMBERED_PER_PEER` requests are remembered per peer (oldest forgotten first).
   A `snapshots_request` counts as a repeat only while the list it would get is the same.
3. **queue**: the answer is *streamed* (`PeerActions.stream`): the peer's send queue holds a
   small producer that reads the manifest or chunk from the snapshot files (or the headers
   from LevelDB) when it is that item's turn, charged to the peer's streamed-byte rate
   (p2p/config.py `streamed_bytes_per_s`); at most `max_streamed_per_peer` answers wait per
   peer, a request beyond them costs `PENALTY_QUEUE_FULL` and is not answered.

An answer for what this node does not have leaves the optional field out (`manifest`,
`chunk`, `header`/`commit`), as the contract says; nothing is charged for asking.

Test-only faults (`FaultPlan.snapshot_fault`, node/fault_plan.py) make this node a hostile
snapshot peer for the e2e tests: `corrupt_chunk`, `wrong_manifest`, `unfinal`, `silent`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from marketplace_tx.chain.block import Header
from marketplace_tx.primitives import codec
from marketplace_tx.rules.snapshots import MAX_CHUNK_DEPTH, ChunkSummary, Manifest
from node.fault_plan import SNAPSHOT_FAULTS
from node.peer_actions import PeerActions
from node.snapshot_store import SnapshotStore
from node.state_history import change_points
from node.storage import ChainStore, StorageError
from p2p.messages import encode_message

log = logging.getLogger("marketchain.snapshots")

REPEAT_WINDOW_S = 30.0
"""The same request from the same peer is answered once within this many seconds."""
MAX_REMEMBERED_PER_PEER = 1024
"""Most requests remembered per peer for the repeat window (oldest go first)."""
MAX_LISTED_SNAPSHOTS = 16
"""A `snapshots` answer lists at most this many, newest first."""
MAX_CHANGES_PER_ANSWER = 32
"""`light_changes_request.limit` is 1 … this."""
MAX_HEIGHT = 2**63 - 1
"""Heights asked are below 2^63 (the store's 8-byte keys)."""
PENALTY_MALFORMED = 10.0
"""Score a peer loses for a request whose body breaks the shape or bounds above."""
PENALTY_QUEUE_FULL = 2.0
"""Score a peer loses for a request while `max_streamed_per_peer` answers already wait."""
FAULTS = SNAPSHOT_FAULTS
"""Test-only misbehaviours (`MARKETCHAIN_TEST_SNAPSHOT_FAULT`, node/fault_plan.py)."""
UNFINAL_DISTANCE = 1000
"""`unfinal`: the made-up snapshot is this many heights above the head."""
REQUEST_KINDS = frozenset(
    {"snapshots_request", "manifest_request", "chunk_request", "light_changes_request", "header_request"}
)
"""The request kinds `SnapshotServer.serve` answers."""


class MalformedRequest(Exception):
    """A request body that breaks its shape or bounds (costs `PENALTY_MALFORMED`)."""


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedRequest(f"{name} must be an integer {low} … {high}")
    return value


def parse_request(kind: str, body: Any) -> tuple[int, ...]:
    """The request's fields, in the order of its answer's key, after the cheap checks."""
    if not isinstance(body, dict):
        raise MalformedRequest("the body must be a map")
    if kind == "snapshots_request":
        return ()
    if kind == "header_request":
        return (_integer(body, "height", 1, MAX_HEIGHT),)
    if kind == "light_changes_request":
        return (_integer(body, "after", 0, MAX_HEIGHT), _integer(body, "limit", 1, MAX_CHANGES_PER_ANSWER))
    depth = _integer(body, "chunk_depth", 0, MAX_CHUNK_DEPTH)
    height = _integer(body, "height", 1, MAX_HEIGHT)
    if kind == "manifest_request":
        return (depth, height)
    return (depth, height, _integer(body, "index", 0, (1 << depth) - 1))


class _Served:
    """When a request was queued for a peer."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class SnapshotServer:
    """Answers peers' state-sync requests from the snapshot files and the store."""

    def __init__(
        self,
        snapshots: SnapshotStore | None,
        store: ChainStore,
        peers: PeerActions,
        fault: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown snapshot fault {fault!r}")
        self.snapshots = snapshots
        """The published snapshots (None: this node writes none; it still serves headers)."""
        self.store = store
        """Headers, commits and change points are read from it."""
        self.peers = peers
        """Streams answers and charges peers for bad requests (R32)."""
        self.fault = fault
        """Test-only misbehaviour, or None (production)."""
        self._clock = clock
        self._served: dict[bytes, OrderedDict[Hashable, _Served]] = {}
        self.answered = 0
        """Requests answered (queued for streaming)."""
        self.ignored = 0
        """Requests not answered: malformed, repeats within the window, no room in the queue."""

    def serve(self, peer: bytes, kind: str, body: Any) -> None:
        """Answer one request of `REQUEST_KINDS` (the module docstring has the order of checks)."""
        try:
            fields = parse_request(kind, body)
        except MalformedRequest as error:
            self.ignored += 1
            self.peers.penalize(peer, PENALTY_MALFORMED, f"{kind} malformed: {error}")
            return
        if self.fault == "silent" and kind != "snapshots_request":
            self.ignored += 1
            return
        request: Hashable = (kind, fields)
        if kind == "snapshots_request":
            request = (kind, tuple(info["height"] for info in self.snapshot_list()))
        served = self._served.setdefault(peer, OrderedDict())
        now = self._clock()
        while served and next(iter(served.values())).at <= now - REPEAT_WINDOW_S:
            served.popitem(last=False)
        if request in served:
            self.ignored += 1
            return
        if not self.peers.stream(peer, lambda: self.response(kind, fields)):
            self.ignored += 1
            self.peers.penalize(peer, PENALTY_QUEUE_FULL, f"{kind} while its answers wait")
            return
        self.answered += 1
        served[request] = _Served(now)
        while len(served) > MAX_REMEMBERED_PER_PEER:
            served.popitem(last=False)

    def forget(self, peer: bytes) -> None:
        """A peer disconnected: forget what it was served."""
        self._served.pop(peer, None)

    # --- answers, read when the peer's writer reaches them ----------------------------

    def response(self, kind: str, fields: tuple[int, ...]) -> bytes | None:
        """The encoded answer to a checked request, read now."""
        if kind == "snapshots_request":
            return encode_message("snapshots", {"snapshots": self.snapshot_list()})
        if kind == "manifest_request":
            depth, height = fields
            body: dict[str, Any] = {"chunk_depth": depth, "height": height}
            manifest = self.manifest_bytes(depth, height)
            if manifest is not None:
                body["manifest"] = manifest
            return encode_message("manifest", body)
        if kind == "chunk_request":
            depth, height, index = fields
            body = {"chunk_depth": depth, "height": height, "index": index}
            chunk = self.chunk_bytes(depth, height, index)
            if chunk is not None:
                body["chunk"] = chunk
            return encode_message("chunk", body)
        if kind == "light_changes_request":
            return encode_message("light_changes", self.light_changes(*fields))
        (height,) = fields
        return encode_message("header", {"height": height, **self.header_and_commit(height)})

    def snapshot_list(self) -> list[dict[str, int]]:
        """`[{chunk_depth, chunks, height}]`, newest first, at most `MAX_LISTED_SNAPSHOTS`."""
        listed = [] if self.snapshots is None else [info.to_map() for info in self.snapshots.list()]
        if self.fault == "unfinal":
            listed.insert(0, {"chunk_depth": 0, "chunks": 1, "height": self._unfinal_height()})
        return listed[:MAX_LISTED_SNAPSHOTS]

    def manifest_bytes(self, depth: int, height: int) -> bytes | None:
        """The canonical manifest of snapshot (height, depth), or None if this node has none."""
        if self.fault == "unfinal" and height == self._unfinal_height() and depth == 0:
            return _made_up_manifest(height).encode()
        if self.snapshots is None or not self._offers(depth, height):
            return None
        if self.fault == "wrong_manifest":
            manifest = self.snapshots.manifest(height)
            return None if manifest is None else _wrong_manifest(manifest).encode()
        return self.snapshots.manifest_bytes(height)

    def chunk_bytes(self, depth: int, height: int, index: int) -> bytes | None:
        """The canonical bytes of chunk `index` of snapshot (height, depth), or None."""
        if self.snapshots is None or not self._offers(depth, height):
            return None
        raw = self.snapshots.chunk_bytes(height, index)
        if raw is not None and self.fault == "corrupt_chunk":
            return _corrupt_chunk(raw)
        return raw

    def light_changes(self, after: int, limit: int) -> dict[str, Any]:
        """The `light_changes` body: change points above `after` (R37), ascending, `next` if more."""
        try:
            points, next_after = change_points(self.store, after, limit)
        except StorageError as error:
            log.error("light_changes_request after %d: %s", after, error)
            return {"changes": []}
        body: dict[str, Any] = {"changes": [
            {"commit": point.commit.encode(), "header": point.header, "height": point.height,
             "next_validators": list(point.next_validators)}
            for point in points
        ]}
        if next_after is not None:
            body["next"] = next_after
        return body

    def header_and_commit(self, height: int) -> dict[str, bytes]:
        """`{commit, header}` (canonical bytes) of `height` if both are kept here, else `{}`."""
        if self.fault == "unfinal" and height == self._unfinal_height():
            return self._made_up_header(height)
        header = self.store.header(height)
        commit = self.store.commit(height)
        if header is None or commit is None:
            return {}
        return {"commit": commit.encode(), "header": codec.encode(header.to_map())}

    def _offers(self, depth: int, height: int) -> bool:
        """Whether snapshot (height, depth) is published here (its summary is cached: no decode)."""
        info = None if self.snapshots is None else self.snapshots.info(height)
        return info is not None and info.chunk_depth == depth

    # --- test faults -----------------------------------------------------------------

    def _unfinal_height(self) -> int:
        return self.store.head().height + UNFINAL_DISTANCE

    def _made_up_header(self, height: int) -> dict[str, bytes]:
        """The head's header renumbered to `height`, with the head's commit: it cannot verify (R37)."""
        head = self.store.head().height
        header = self.store.header(head)
        commit = self.store.commit(head)
        if header is None or commit is None:
            return {}
        made_up = Header.from_map(
            {**header.to_map(), "height": height, "state_root": _made_up_manifest(height).state_root}
        )
        return {"commit": commit.encode(), "header": codec.encode(made_up.to_map())}


def _made_up_manifest(height: int) -> Manifest:
    """`unfinal`: one chunk of one made-up entry, folding to a made-up root."""
    digest = hashlib.sha256(b"unfinal %d" % height).digest()
    return Manifest(0, (ChunkSummary(1, digest),), height, digest)


def _wrong_manifest(manifest: Manifest) -> Manifest:
    """`wrong_manifest`: the first non-empty chunk's hash changed (it no longer folds to the root)."""
    chunks = list(manifest.chunks)
    for index, chunk in enumerate(chunks):
        if chunk.count:
            chunks[index] = ChunkSummary(chunk.count, bytes([chunk.hash[0] ^ 1]) + chunk.hash[1:])
            break
    return Manifest(manifest.chunk_depth, tuple(chunks), manifest.height, manifest.state_root)


def _corrupt_chunk(raw: bytes) -> bytes:
    """`corrupt_chunk`: one byte of the first non-empty value flipped (cheap checks still pass)."""
    entries = codec.decode(raw)
    for entry in entries:
        if entry[1]:
            entry[1] = entry[1][:-1] + bytes([entry[1][-1] ^ 1])
            break
    return codec.encode(entries)
