"""The shapes of the answers a joining node receives during state sync (PROTOCOL R37, R39).

Cheap checks only, before anything is kept or verified: a body of the wrong shape raises
`MalformedAnswer` (the peer is charged for malformed data, R32). What the bytes mean is
checked after: headers and change points by the light client (R37), manifests by their
fold, chunks against the manifest (R39). Bodies: docs/p2p.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus.light_client import MAX_HEADER_BYTES, MAX_VALIDATORS
from marketplace_tx.chain.block import decode_commit
from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.primitives.errors import InvalidBlock

LIGHT_CHANGES_PAGE = 32
"""Change points asked per `light_changes_request` (the most a peer serves at once)."""
MAX_COMMIT_BYTES = 64 * 1024 + MAX_VALIDATORS * 128
"""A commit longer than this cannot be one of at most `MAX_VALIDATORS` signatures."""


class MalformedAnswer(ValueError):
    """An answer whose shape is wrong (not a failed verification)."""


def is_count(value: Any) -> bool:
    """True for an integer ≥ 0 that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class HeaderAnswer:
    """A `header` answer: the canonical header of `height` and the commit that finalized it."""

    height: int
    """The height asked for."""
    header: bytes | None
    """Canonical header bytes; None when the peer does not keep that header."""
    commit: bytes | None
    """Canonical commit bytes; None when absent."""


def parse_header_answer(body: Any) -> HeaderAnswer:
    """A `header {commit?, header?, height}` answer; `MalformedAnswer` if its shape is wrong."""
    if not isinstance(body, dict) or not is_count(body.get("height")):
        raise MalformedAnswer("header answer without a height")
    header, commit = body.get("header"), body.get("commit")
    if (header is None) != (commit is None):
        raise MalformedAnswer("a header answer holds both header and commit, or neither")
    if header is not None and (not isinstance(header, bytes) or len(header) > MAX_HEADER_BYTES
                               or not isinstance(commit, bytes) or len(commit) > MAX_COMMIT_BYTES):
        raise MalformedAnswer("header and commit must be bytes within bounds")
    return HeaderAnswer(body["height"], header, commit)


@dataclass(frozen=True)
class ChangesPage:
    """A `light_changes` answer: change points after `after`, and where to continue."""

    changes: tuple[ChangePoint, ...]
    """The change points, ascending, all above the `after` asked for."""
    next: int | None
    """Ask again with after = next when present."""


def parse_changes_page(body: Any, after: int) -> ChangesPage:
    """A `light_changes {changes, next?}` answer to `after`; `MalformedAnswer` if its shape or
    order is wrong (commits decoded, signatures not yet checked: that is R37's)."""
    changes = body.get("changes") if isinstance(body, dict) else None
    if not isinstance(changes, list) or len(changes) > LIGHT_CHANGES_PAGE:
        raise MalformedAnswer(f"changes must be a list of at most {LIGHT_CHANGES_PAGE}")
    following = body.get("next")
    if following is not None and (not is_count(following) or following <= after):
        raise MalformedAnswer("next must be a height above the one asked after")
    points: list[ChangePoint] = []
    previous = after
    for entry in changes:
        if not isinstance(entry, dict) or not is_count(entry.get("height")) or entry["height"] <= previous:
            raise MalformedAnswer("change points come ascending, above the height asked after")
        header, commit, next_set = entry.get("header"), entry.get("commit"), entry.get("next_validators")
        if not isinstance(header, bytes) or len(header) > MAX_HEADER_BYTES or not isinstance(commit, bytes) \
                or len(commit) > MAX_COMMIT_BYTES:
            raise MalformedAnswer("a change point holds header and commit bytes within bounds")
        if not isinstance(next_set, list) or len(next_set) > MAX_VALIDATORS \
                or not all(isinstance(address, bytes) and len(address) == 32 for address in next_set):
            raise MalformedAnswer(f"next_validators is a list of at most {MAX_VALIDATORS} 32-byte addresses")
        try:
            decoded = decode_commit(commit)
        except InvalidBlock as error:
            raise MalformedAnswer(f"a change point's commit: {error.message}") from None
        points.append(ChangePoint(entry["height"], header, decoded, tuple(next_set)))
        previous = entry["height"]
    if following is not None and points and following < points[-1].height:
        raise MalformedAnswer("next is below the last change point listed")
    return ChangesPage(tuple(points), following)


@dataclass(frozen=True)
class ManifestAnswer:
    """A `manifest` answer for (height, chunk_depth)."""

    height: int
    """The snapshot height asked for."""
    chunk_depth: int
    """Its chunk depth."""
    manifest: bytes | None
    """The canonical manifest bytes; None when the peer does not have that snapshot."""


MAX_MANIFEST_BYTES = 48 + (1 << 16) * 48
"""A manifest of 2^16 chunks of {count, hash} is under this many bytes."""


def parse_manifest_answer(body: Any) -> ManifestAnswer:
    """A `manifest {chunk_depth, height, manifest?}` answer; `MalformedAnswer` if its shape is wrong."""
    if not isinstance(body, dict) or not is_count(body.get("height")) or not is_count(body.get("chunk_depth")):
        raise MalformedAnswer("manifest answer without height and chunk_depth")
    manifest = body.get("manifest")
    if manifest is not None and (not isinstance(manifest, bytes) or len(manifest) > MAX_MANIFEST_BYTES):
        raise MalformedAnswer(f"manifest must be bytes, at most {MAX_MANIFEST_BYTES}")
    return ManifestAnswer(body["height"], body["chunk_depth"], manifest)


@dataclass(frozen=True)
class ChunkAnswer:
    """A `chunk` answer for (height, chunk_depth, index)."""

    height: int
    """The snapshot height."""
    chunk_depth: int
    """Its chunk depth."""
    index: int
    """The chunk's index."""
    chunk: bytes | None
    """The canonical chunk bytes; None when not available."""


def parse_chunk_answer(body: Any) -> ChunkAnswer:
    """A `chunk {chunk?, chunk_depth, height, index}` answer; `MalformedAnswer` if its shape is wrong."""
    if not isinstance(body, dict) or not all(is_count(body.get(name)) for name in ("height", "chunk_depth", "index")):
        raise MalformedAnswer("chunk answer without height, chunk_depth and index")
    chunk = body.get("chunk")
    if chunk is not None and not isinstance(chunk, bytes):
        raise MalformedAnswer("chunk must be bytes")
    return ChunkAnswer(body["height"], body["chunk_depth"], body["index"], chunk)
