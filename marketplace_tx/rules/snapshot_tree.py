"""The state tree's records rebuilt from a snapshot, chunk by chunk (PROTOCOL R35, R39).

A joining node writes each verified chunk's entries together with the tree records of
that chunk's subtree, so that once every chunk is in, the stored tree (node/storage.py,
`Dn`) is exactly the tree a node that executed every block holds:

- `check_chunk_tree`: R39's checks of one chunk; the chunk's hash is checked by building
  its subtree (`state_tree.build_subtree`: each entry hashed once), which gives the
  records to store: the chunk's own record at the chunk's position (depth d) and every
  record below it.
- `upper_tree`: once every chunk is in, the records above depth d, from the chunks' own
  records. A chunk holding one entry has a leaf as its own record; in the whole tree that
  leaf sits at the highest position whose subtree holds only it (R35: "a subtree holding
  one entry is that entry's leaf wherever it sits"), so it moves up, and the record at
  depth d is deleted.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from marketplace_tx.primitives.sparse_merkle import EMPTY
from marketplace_tx.rules.snapshots import InvalidSnapshot, Manifest, read_chunk
from marketplace_tx.rules.state_tree import (
    INTERNAL,
    ROOT_POSITION,
    build_subtree,
    position,
    record_hash,
)


@dataclass(frozen=True)
class ChunkTree:
    """One verified chunk and the tree records of its subtree."""

    entries: list[tuple[bytes, bytes]]
    """The chunk's (key, value) entries, sorted by key."""
    root_record: bytes | None
    """The record of the chunk's subtree (T(entries, d) is its hash), to store at
    `chunk_position(d, index)` for now; None for an empty chunk."""
    records: dict[bytes, bytes]
    """Every record below the chunk's own, by position (none when it holds ≤ 1 entry)."""


def chunk_position(depth: int, index: int) -> bytes:
    """The tree position of chunk `index`'s subtree at `depth` (state_tree.position)."""
    return position(depth, (index << (256 - depth)).to_bytes(32, "big") if depth else bytes(32))


def check_chunk_tree(manifest: Manifest, index: int, raw: bytes) -> ChunkTree:
    """Chunk `index` of `manifest` checked by R39 (`InvalidSnapshot` if it fails), with its records."""
    entries = read_chunk(manifest, index, raw)
    root_record, records = build_subtree(manifest.chunk_depth, entries)
    found = EMPTY if root_record is None else record_hash(root_record)
    if found != manifest.chunks[index].hash:
        raise InvalidSnapshot(f"chunk {index} does not hash to the manifest's")
    return ChunkTree(entries, root_record, records)


@dataclass(frozen=True)
class UpperTree:
    """The records above the chunks' depth, and the chunks' own records that move."""

    puts: dict[bytes, bytes]
    """Records to store by position: depth < d, and lone leaves at their final place."""
    deletes: frozenset[bytes]
    """Chunk positions (depth d) whose lone leaf moved up."""
    root: bytes
    """The tree's root hash: the manifest's state_root when every chunk verified."""


def upper_tree(depth: int, chunk_records: Sequence[bytes | None]) -> UpperTree:
    """The tree above depth `depth` from the 2^depth chunks' own records (None: empty chunk)."""
    if len(chunk_records) != 1 << depth:
        raise ValueError(f"depth {depth} needs {1 << depth} chunk records, not {len(chunk_records)}")
    puts: dict[bytes, bytes] = {}
    deletes: set[bytes] = set()
    # Each level: (record or None, where it sits now if already stored at depth d, else None).
    level: list[tuple[bytes | None, bytes | None]] = [
        (record, None if record is None else chunk_position(depth, index))
        for index, record in enumerate(chunk_records)
    ]
    for current in range(depth, 0, -1):
        combined: list[tuple[bytes | None, bytes | None]] = []
        for pair_index in range(len(level) // 2):
            left, right = level[2 * pair_index], level[2 * pair_index + 1]
            if left[0] is None and right[0] is None:
                combined.append((None, None))
                continue
            lone = right if left[0] is None else left if right[0] is None else None
            if lone is not None and lone[0] is not None and lone[0][0] != INTERNAL:
                combined.append(lone)  # a lone leaf moves up; it is placed where it stops
                continue
            for index, child in ((2 * pair_index, left), (2 * pair_index + 1, right)):
                record, stored_at = child
                if record is None:
                    continue
                target = chunk_position(current, index)
                if stored_at != target:
                    puts[target] = record
                    if stored_at is not None:
                        deletes.add(stored_at)
            hashes = [EMPTY if child[0] is None else record_hash(child[0]) for child in (left, right)]
            combined.append((bytes((INTERNAL,)) + hashes[0] + hashes[1], None))
        level = combined
    record, stored_at = level[0]
    if record is None:
        return UpperTree({}, frozenset(deletes), EMPTY)
    if stored_at != ROOT_POSITION:
        puts[ROOT_POSITION] = record
        if stored_at is not None:
            deletes.add(stored_at)
    deletes.difference_update(puts)
    return UpperTree(puts, frozenset(deletes), record_hash(record))
