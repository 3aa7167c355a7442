"""The state tree, updated incrementally per block (PROTOCOL R35), and its proofs (R36).

The tree is R35's compressed binary sparse Merkle tree (hashing in
`marketplace_tx.primitives.sparse_merkle`). Its nodes are stored by **position**:

    position(depth, path) = depth (2 bytes, big-endian) ‖ the first ceil(depth/8) bytes
                            of `path` with every bit from `depth` on set to 0
    record                = 0x01 ‖ left(32) ‖ right(32)          an internal node
                          | 0x00 ‖ path(32) ‖ SHA-256(value)     a leaf (one entry)

Exactly the nodes of the current tree are stored: a subtree of one entry is that
entry's leaf record at the subtree's position, an empty subtree is no record. Storage
(a `TreeReader`) holds the records; this module never writes: `update_tree` returns the
records to put and the positions to delete, which storage writes in the block's one
atomic batch.

**Batched update.** The block's changed keys are sorted by path and pushed down the
tree together: each node on the union of their paths is read once and hashed once, so
upper levels shared by many changed keys cost one hash per block, not one per key.
Unchanged subtrees are never read (their hash is in their parent's record) except the
sibling of a subtree that became empty, to see whether a lone leaf must move up.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from marketplace_tx.primitives.sparse_merkle import (
    EMPTY,
    ProofLeaf,
    StateProof,
)

LEAF = 0
"""First byte of a leaf record."""
INTERNAL = 1
"""First byte of an internal node's record."""
ROOT_POSITION = b"\x00\x00"
"""The position of the root (depth 0)."""

_sha256 = hashlib.sha256
_LEAF_TAG = b"\x00"
_INTERNAL_TAG = b"\x01"


_LAST_BYTE_MASKS = [0xFF, 0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE]


def position(depth: int, path: bytes) -> bytes:
    """The storage position of the node at `depth` on the 32-byte path `path`."""
    if depth == 0:
        return ROOT_POSITION
    size = (depth + 7) >> 3
    extra = depth & 7
    if extra:
        return bytes((depth >> 8, depth & 0xFF)) + path[: size - 1] + bytes((path[size - 1] & _LAST_BYTE_MASKS[extra],))
    return bytes((depth >> 8, depth & 0xFF)) + path[:size]


def record_hash(record: bytes) -> bytes:
    """The hash of the node a record stores (R35): a record is its node's hash input,
    0x01 ‖ left ‖ right for node(l, r) and 0x00 ‖ path ‖ SHA-256(v) for a leaf."""
    return _sha256(record).digest()


def _flip(path: bytes, depth: int) -> bytes:
    """`path` with bit `depth` inverted (a path into the sibling subtree)."""
    index = depth >> 3
    return path[:index] + bytes((path[index] ^ (0x80 >> (depth & 7)),)) + path[index + 1:]


class TreeReader(Protocol):
    """Read access to the stored records of a committed tree, implemented by storage."""

    def tree_node(self, position: bytes) -> bytes | None:
        """The record at `position`, or None for an empty subtree."""
        ...


@dataclass(frozen=True)
class TreeUpdate:
    """What a batch of changes does to the stored tree."""

    root: bytes
    """The new root: the `state_root` (R23, R35)."""
    puts: dict[bytes, bytes] = field(default_factory=dict)
    """Records to store, by position."""
    deletes: frozenset[bytes] = frozenset()
    """Positions whose record must be removed."""


class MemoryTree:
    """A `TreeReader` over a dict: for tests, tools and `MemoryStateReader`."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}
        """The stored records by position."""

    def tree_node(self, position: bytes) -> bytes | None:
        """The record at `position`."""
        return self.records.get(position)

    def apply(self, update: TreeUpdate) -> None:
        """Write an update's records and deletions."""
        for deleted in update.deletes:
            self.records.pop(deleted, None)
        self.records.update(update.puts)


class OverlayTreeReader:
    """A committed tree with an update laid over it, without writing either."""

    def __init__(self, base: TreeReader, update: TreeUpdate) -> None:
        self.base = base
        """The tree under the update."""
        self.update = update
        """The update seen through."""

    def tree_node(self, position: bytes) -> bytes | None:
        """The record at `position` once the update is applied."""
        record = self.update.puts.get(position)
        if record is not None:
            return record
        if position in self.update.deletes:
            return None
        return self.base.tree_node(position)


def tree_root(reader: TreeReader) -> bytes:
    """The root of the stored tree (EMPTY for an empty state)."""
    record = reader.tree_node(ROOT_POSITION)
    return EMPTY if record is None else record_hash(record)


_Child = tuple[bytes, "bytes | None", "bytes | None", bytes]
"""One child of a node in an update: (position, old record, new record, new hash); the
position is b"" and the records None when no change goes into it."""


class _Batch:
    """One `update_tree` call: the sorted changes and the writes collected so far."""

    def __init__(self, reader: TreeReader, changes: Mapping[bytes, bytes | None]) -> None:
        entries = []
        for key, value in changes.items():
            path = _sha256(key).digest()
            entries.append((int.from_bytes(path, "big"), path, None if value is None else _sha256(value).digest()))
        entries.sort()
        self.reader = reader
        self.paths = [entry[0] for entry in entries]
        self.entries = entries
        self.puts: dict[bytes, bytes] = {}
        self.deletes: set[bytes] = set()

    def put(self, where: bytes, record: bytes) -> None:
        self.deletes.discard(where)
        self.puts[where] = record

    def delete(self, where: bytes) -> None:
        self.puts.pop(where, None)
        self.deletes.add(where)

    def update(self, depth: int, low: int, high: int, record: bytes | None) -> bytes | None:
        """The new record of the subtree at `depth` holding changes [low, high), whose
        current record is `record`; writes every position below it."""
        if record is None or record[0] == LEAF:
            return self.rebuild(depth, low, high, record)
        if high - low == 1 and self.entries[low][2] is not None:
            return self.single_put(depth, low, record)
        shift = 255 - depth
        middle = bisect_left(self.paths, ((self.paths[low] >> shift) | 1) << shift, low, high)
        left = self._descend(depth + 1, low, middle, record[1:33])
        right = self._descend(depth + 1, middle, high, record[33:65])
        if left[3] == EMPTY or right[3] == EMPTY:
            lone = self._lone(depth, low, left, right)
            if lone is not None:
                return lone if lone != b"" else None
        for where, old, new, _ in (left, right):
            if where and new != old:
                if new is None:
                    self.delete(where)
                else:
                    self.put(where, new)
        return _INTERNAL_TAG + left[3] + right[3]

    def _descend(self, depth: int, low: int, high: int, current_hash: bytes) -> _Child:
        """One child of an internal node: pushed down with changes [low, high) if there
        are any (its position, old and new record, new hash), else only its hash."""
        if high == low:
            return b"", None, None, current_hash
        where = position(depth, self.entries[low][1])
        old = None if current_hash == EMPTY else self._child(where)
        new = self.update(depth, low, high, old)
        return where, old, new, EMPTY if new is None else _sha256(new).digest()

    def single_put(self, depth: int, index: int, record: bytes) -> bytes:
        """`update` of an internal node under which the only change is one put: walk down
        its path without recursion, then hash back up (a put never empties a subtree, so
        no lone leaf moves up). Gives exactly what `update` gives; it is the common case
        below the levels a block's keys share."""
        path_number, path, _ = self.entries[index]
        puts, deletes = self.puts, self.deletes
        stack = []
        current: bytes | None = record
        while current is not None and current[0] == INTERNAL:
            bit = (path_number >> (255 - depth)) & 1
            sibling, child_hash = (current[1:33], current[33:65]) if bit else (current[33:65], current[1:33])
            depth += 1
            child_position = position(depth, path)
            current = None if child_hash == EMPTY else self._child(child_position)
            stack.append((bit, sibling, child_position, current))
        new = self.rebuild(depth, index, index + 1, current)
        assert new is not None
        for bit, sibling, child_position, old in reversed(stack):
            if new != old:
                deletes.discard(child_position)
                puts[child_position] = new
            digest = _sha256(new).digest()
            new = _INTERNAL_TAG + (sibling + digest if bit else digest + sibling)
        return new

    def _lone(self, depth: int, low: int, left: _Child, right: _Child) -> bytes | None:
        """Where a child became or stayed empty: b"" if the whole subtree is now empty,
        the leaf record if one lone leaf is left (it moves up here), None if the other
        child is an internal node (this node stays internal)."""
        for where, old, new, _ in (left, right):
            if old is not None and new is None:
                self.delete(where)
        if left[3] == EMPTY and right[3] == EMPTY:
            return b""
        where, old, new, _ = right if left[3] == EMPTY else left
        if not where:  # the other child had no changes: read it
            where = position(depth + 1, _flip(self.entries[low][1], depth))
            old = new = self._child(where)
        assert new is not None
        if new[0] == LEAF:  # a lone leaf moves up to this position
            if old is not None:
                self.delete(where)
            return new
        return None

    def _child(self, where: bytes) -> bytes:
        record = self.reader.tree_node(where)
        if record is None:
            raise ValueError(f"state tree record missing at position {where.hex()}")
        return record

    def rebuild(self, depth: int, low: int, high: int, record: bytes | None) -> bytes | None:
        """The new record of a subtree that is empty or one leaf (`record`) before the changes."""
        fresh = [entry for entry in self.entries[low:high] if entry[2] is not None]
        if record is not None:
            old_path = record[1:33]
            if all(entry[1] != old_path for entry in self.entries[low:high]):
                fresh.append((int.from_bytes(old_path, "big"), old_path, record[33:65]))
                fresh.sort()
        if len(fresh) == 1 and record is not None and fresh[0][1] == record[1:33] and fresh[0][2] == record[33:65]:
            return record
        return self.build(depth, fresh)

    def build(self, depth: int, entries: list[tuple[int, bytes, bytes | None]]) -> bytes | None:
        """The record of a subtree holding exactly `entries`, every position below it written
        (they are all empty before)."""
        if not entries:
            return None
        if len(entries) == 1:
            _, path, value_hash = entries[0]
            assert value_hash is not None
            return _LEAF_TAG + path + value_hash
        shift = 255 - depth
        boundary = ((entries[0][0] >> shift) | 1) << shift
        middle = bisect_left([entry[0] for entry in entries], boundary)
        children = []
        for part in (entries[:middle], entries[middle:]):
            child = self.build(depth + 1, part)
            if child is None:
                children.append(EMPTY)
            else:
                self.put(position(depth + 1, part[0][1]), child)
                children.append(_sha256(child).digest())
        return _INTERNAL_TAG + children[0] + children[1]


def update_tree(reader: TreeReader, changes: Mapping[bytes, bytes | None]) -> TreeUpdate:
    """The tree after `changes` (None deletes a key), as records to write (R35).

    Reads only the nodes on the changed keys' paths (and a sibling where a subtree
    collapses); `reader` is not modified.
    """
    root_record = reader.tree_node(ROOT_POSITION)
    if not changes:
        return TreeUpdate(EMPTY if root_record is None else record_hash(root_record))
    batch = _Batch(reader, changes)
    new_root = batch.update(0, 0, len(batch.entries), root_record)
    if new_root is None:
        if root_record is not None:
            batch.delete(ROOT_POSITION)
        root = EMPTY
    else:
        if new_root != root_record:
            batch.put(ROOT_POSITION, new_root)
        root = record_hash(new_root)
    return TreeUpdate(root, batch.puts, frozenset(batch.deletes))


def build_subtree(depth: int, entries: Iterable[tuple[bytes, bytes]],
                  with_records: bool = True) -> tuple[bytes | None, dict[bytes, bytes]]:
    """The records of a subtree at `depth` holding exactly `entries` (key, value), all under
    one path prefix of `depth` bits: its own record (None if empty) and every record below
    it by position, as they sit in the whole tree. Restoring a snapshot chunk (R39) writes
    these; `record_hash` of its own record is T(entries, depth). Each entry is hashed once
    and each node once (the same records `update_tree` writes, without reading any).
    `with_records=False` skips collecting the records below (only the hash is wanted:
    a snapshot writer's chunk hash)."""
    located = []
    for key, value in entries:
        path = _sha256(key).digest()
        located.append((int.from_bytes(path, "big"), path, _sha256(value).digest()))
    located.sort()
    paths = [entry[0] for entry in located]
    puts: dict[bytes, bytes] = {}

    def build(level: int, low: int, high: int) -> bytes:
        if high - low == 1:
            _, path, value_hash = located[low]
            return _LEAF_TAG + path + value_hash
        shift = 255 - level
        middle = bisect_left(paths, ((paths[low] >> shift) | 1) << shift, low, high)
        hashes = []
        for start, stop in ((low, middle), (middle, high)):
            if start == stop:
                hashes.append(EMPTY)
                continue
            child = build(level + 1, start, stop)
            if with_records:
                puts[position(level + 1, located[start][1])] = child
            hashes.append(_sha256(child).digest())
        return _INTERNAL_TAG + hashes[0] + hashes[1]

    if not located:
        return None, puts
    return build(depth, 0, len(located)), puts


def prove_key(reader: TreeReader, key: bytes, value: bytes | None, height: int) -> StateProof:
    """The R36 proof of `key` in the stored tree, which must hold `value` (None: absent).

    Raises ValueError if the tree disagrees with `value` or a record is missing: a node
    never serves a proof that does not hold.
    """
    path = _sha256(key).digest()
    path_number = int.from_bytes(path, "big")
    siblings: list[bytes] = []
    record = reader.tree_node(ROOT_POSITION)
    depth = 0
    while record is not None and record[0] == INTERNAL:
        bit = (path_number >> (255 - depth)) & 1
        left, right = record[1:33], record[33:65]
        siblings.append(left if bit else right)
        depth += 1
        if (right if bit else left) == EMPTY:
            record = None
            break
        record = reader.tree_node(position(depth, path))
        if record is None:
            raise ValueError(f"state tree record missing at depth {depth} on the path of {key.hex()}")
    leaf: ProofLeaf | None = None
    if record is not None and record[1:33] == path:
        if value is None or _sha256(value).digest() != record[33:65]:
            raise ValueError(f"the state tree holds another value for {key.hex()}")
    else:
        if value is not None:
            raise ValueError(f"the state tree does not hold {key.hex()}")
        if record is not None:
            leaf = ProofLeaf(record[1:33], record[33:65])
    return StateProof(height, key, value, leaf, tuple(siblings))
