"""State snapshots for state sync: chunks, manifests and their checks (PROTOCOL R39).

The state after height H is split into 2^d chunks by the first d bits of each key's
path (SHA-256 of the key). Chunk i is the canonical array `[[key, value], …]` of its entries sorted by
key; its hash is T(entries, d) and its count their number. The manifest
`{chunk_depth, chunks: [{count, hash}], height, state_root}` is valid iff folding its
chunks up gives `state_root`; a chunk is valid iff its keys are sorted, unique and under
its prefix, and its hash and count are the manifest's. Pure: no I/O. Serving and
fetching snapshots is the node's (issue 15).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError
from marketplace_tx.primitives.sparse_merkle import EMPTY, key_path, node_hash, subtree_root

MAX_CHUNK_DEPTH = 16
"""d ≤ 16: at most 65,536 chunks (R39)."""
MAX_CHUNK_BYTES = 4 * 1024 * 1024
"""A chunk's canonical bytes are at most 4 MiB (R39)."""
MAX_CHUNK_COUNT = 2**32 - 1
"""A chunk's count is below 2^32 (R39)."""


class InvalidSnapshot(Exception):
    """A manifest or a chunk that breaks R39, with what did not hold."""


@dataclass(frozen=True)
class ChunkSummary:
    """One chunk as a manifest lists it."""

    count: int
    """How many entries the chunk holds."""
    hash: bytes
    """T(entries, chunk_depth): the chunk's subtree root."""


@dataclass(frozen=True)
class Manifest:
    """What a snapshot of the state after `height` is made of (R39)."""

    chunk_depth: int
    """d: the state is split by the first d bits of the keys' paths into 2^d chunks."""
    chunks: tuple[ChunkSummary, ...]
    """The chunks in prefix order."""
    height: int
    """The height whose state this is."""
    state_root: bytes
    """That header's state_root, which the chunks must fold up to."""

    def to_map(self) -> dict[str, Any]:
        """The canonical map of R39 (what `/snapshots/{H}/manifest` serves as msgpack)."""
        return {
            "chunk_depth": self.chunk_depth,
            "chunks": [{"count": chunk.count, "hash": chunk.hash} for chunk in self.chunks],
            "height": self.height,
            "state_root": self.state_root,
        }

    def encode(self) -> bytes:
        """Canonical bytes: honest manifests of the same (H, d) are identical (R39)."""
        return codec.encode(self.to_map())


def chunk_index(key: bytes, depth: int) -> int:
    """The chunk a key belongs to at `depth`: the first `depth` bits of its path."""
    return int.from_bytes(key_path(key), "big") >> (256 - depth)


def split_chunks(entries: Iterable[tuple[bytes, bytes]], depth: int) -> list[list[tuple[bytes, bytes]]]:
    """The state's entries in 2^depth chunks, each sorted by key (R39)."""
    if not 0 <= depth <= MAX_CHUNK_DEPTH:
        raise InvalidSnapshot(f"chunk_depth must be 0..{MAX_CHUNK_DEPTH}")
    chunks: list[list[tuple[bytes, bytes]]] = [[] for _ in range(1 << depth)]
    for key, value in entries:
        chunks[chunk_index(key, depth)].append((key, value))
    for chunk in chunks:
        chunk.sort()
    return chunks


def make_manifest(entries: Iterable[tuple[bytes, bytes]], depth: int, height: int, state_root: bytes) -> Manifest:
    """The manifest of the state `entries` after `height`, split at `depth`."""
    chunks = split_chunks(entries, depth)
    summaries = tuple(ChunkSummary(len(chunk), subtree_root(chunk, depth)) for chunk in chunks)
    return Manifest(depth, summaries, height, state_root)


def encode_chunk(entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A chunk's canonical bytes: `[[key, value], …]` sorted by key (R39)."""
    return codec.encode([[key, value] for key, value in entries])


def fold_manifest(chunks: Sequence[ChunkSummary]) -> bytes:
    """The root the chunks fold up to (R39): two siblings combine to (EMPTY, 0) if both are
    empty, to the non-empty one if they hold one entry in all, else to node(h0, h1)."""
    if not chunks or len(chunks) & (len(chunks) - 1):
        raise InvalidSnapshot("a manifest lists 2^d chunks")
    level = [(chunk.hash, chunk.count) for chunk in chunks]
    while len(level) > 1:
        combined = []
        for (left_hash, left_count), (right_hash, right_count) in zip(level[::2], level[1::2], strict=True):
            total = left_count + right_count
            if total == 0:
                combined.append((EMPTY, 0))
            elif total == 1:
                combined.append((left_hash, 1) if left_count else (right_hash, 1))
            else:
                combined.append((node_hash(left_hash, right_hash), total))
        level = combined
    return level[0][0]


def check_manifest(manifest: Manifest) -> None:
    """Raise `InvalidSnapshot` unless the manifest is well formed and folds to its state_root
    (which the caller must take from a header it verified itself, never from a node)."""
    if not 0 <= manifest.chunk_depth <= MAX_CHUNK_DEPTH:
        raise InvalidSnapshot(f"chunk_depth must be 0..{MAX_CHUNK_DEPTH}")
    if len(manifest.chunks) != 1 << manifest.chunk_depth:
        raise InvalidSnapshot(f"chunk_depth {manifest.chunk_depth} needs {1 << manifest.chunk_depth} chunks")
    for index, chunk in enumerate(manifest.chunks):
        if not 0 <= chunk.count <= MAX_CHUNK_COUNT or len(chunk.hash) != 32:
            raise InvalidSnapshot(f"chunks[{index}]: count below 2^32 and a 32-byte hash")
        if (chunk.count == 0) != (chunk.hash == EMPTY):
            raise InvalidSnapshot(f"chunks[{index}]: an empty chunk, and only it, hashes to EMPTY")
    if fold_manifest(manifest.chunks) != manifest.state_root:
        raise InvalidSnapshot("the chunks do not fold up to the state_root")


def check_chunk(manifest: Manifest, index: int, raw: bytes) -> list[tuple[bytes, bytes]]:
    """The entries of chunk `index` if `raw` is that chunk of `manifest` (R39), else
    `InvalidSnapshot`; cheap checks (size, shape, order, prefix, count) before the hash."""
    entries = read_chunk(manifest, index, raw)
    if subtree_root(entries, manifest.chunk_depth) != manifest.chunks[index].hash:
        raise InvalidSnapshot(f"chunk {index} does not hash to the manifest's")
    return entries


def read_chunk(manifest: Manifest, index: int, raw: bytes) -> list[tuple[bytes, bytes]]:
    """The entries of chunk `index` after R39's cheap checks only (size, canonical
    encoding, shape, count, order, prefix): the caller still checks the hash
    (`check_chunk`, or `snapshot_tree.check_chunk_tree`, which hashes while it builds)."""
    if not 0 <= index < len(manifest.chunks):
        raise InvalidSnapshot(f"chunk {index} is not in the manifest")
    if len(raw) > MAX_CHUNK_BYTES:
        raise InvalidSnapshot(f"chunk {index} is over {MAX_CHUNK_BYTES} bytes")
    try:
        decoded = codec.decode(raw)
    except CodecError as error:
        raise InvalidSnapshot(f"chunk {index} is not canonical msgpack: {error}") from None
    expected = manifest.chunks[index]
    if not isinstance(decoded, list) or len(decoded) != expected.count:
        raise InvalidSnapshot(f"chunk {index} does not hold the manifest's {expected.count} entries")
    entries: list[tuple[bytes, bytes]] = []
    previous: bytes | None = None
    for position, item in enumerate(decoded):
        if (not isinstance(item, list) or len(item) != 2
                or not isinstance(item[0], bytes) or not isinstance(item[1], bytes)):
            raise InvalidSnapshot(f"chunk {index}, entry {position}: not a [key, value] pair of bytes")
        key, value = item
        if previous is not None and key <= previous:
            raise InvalidSnapshot(f"chunk {index}, entry {position}: keys not sorted and unique")
        if chunk_index(key, manifest.chunk_depth) != index:
            raise InvalidSnapshot(f"chunk {index}, entry {position}: key not under the chunk's prefix")
        entries.append((key, value))
        previous = key
    return entries


def manifest_from_map(value: Any) -> Manifest:
    """The manifest a decoded canonical map describes (what a peer sent), with shape checks
    only: `InvalidSnapshot` names what is wrong. The caller still runs `check_manifest`
    against the state_root of a header it verified itself by the light client (R39)."""
    if not isinstance(value, dict) or set(value) != {"chunk_depth", "chunks", "height", "state_root"}:
        raise InvalidSnapshot("a manifest is the map {chunk_depth, chunks, height, state_root}")
    depth, chunks, height, state_root = value["chunk_depth"], value["chunks"], value["height"], value["state_root"]
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_CHUNK_DEPTH:
        raise InvalidSnapshot(f"chunk_depth must be an integer 0..{MAX_CHUNK_DEPTH}")
    if isinstance(height, bool) or not isinstance(height, int) or height < 0:
        raise InvalidSnapshot("height must be an integer ≥ 0")
    if not isinstance(state_root, bytes) or len(state_root) != 32:
        raise InvalidSnapshot("state_root must be 32 bytes")
    if not isinstance(chunks, list) or len(chunks) != 1 << depth:
        raise InvalidSnapshot(f"chunk_depth {depth} needs a list of {1 << depth} chunks")
    summaries = []
    for index, chunk in enumerate(chunks):
        if not isinstance(chunk, dict) or set(chunk) != {"count", "hash"}:
            raise InvalidSnapshot(f"chunks[{index}] is the map {{count, hash}}")
        count, digest = chunk["count"], chunk["hash"]
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_CHUNK_COUNT:
            raise InvalidSnapshot(f"chunks[{index}].count must be an integer below 2^32")
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise InvalidSnapshot(f"chunks[{index}].hash must be 32 bytes")
        summaries.append(ChunkSummary(count, digest))
    return Manifest(depth, tuple(summaries), height, state_root)
