"""LevelDB storage of the chain: blocks, commits, indexes, receipts, state and head.

Everything one block changes is written in **one atomic, synced LevelDB batch**
(`commit_block`): the block, its commit, the block-hash and transaction indexes,
the receipts, the net state changes, the state tree's changed nodes (R35), the
block's undo record and change point (node/state_history.py), the marketplace
read-model indexes (node/indexer.py) and the head pointer. LevelDB applies a batch
entirely or not at all, and `sync=True` makes it durable before the call returns, so
a crash at any moment leaves the previous block as head, never half a block
(docs/storage.md has the key layout).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import plyvel

from marketplace_tx.chain.block import Block, Commit, Header, decode_block, decode_commit
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.primitives import codec
from marketplace_tx.rules.state_keys import VALIDATORS
from marketplace_tx.rules.state_transition import BlockResult, ChainTip, genesis_changes
from marketplace_tx.rules.state_tree import (
    ROOT_POSITION,
    MemoryTree,
    TreeUpdate,
    tree_root,
    update_tree,
)
from marketplace_tx.rules.validators import validators_hash
from marketplace_tx.speedups import decode_trusted
from node.indexer import OBJECT_POSITIONS, block_index_writes

STATE = b"S"
"""S ‖ state key → state value (marketplace_tx.rules.state_keys)."""
BLOCK = b"B"
"""B ‖ height(8, big-endian) → canonical block bytes."""
COMMIT = b"C"
"""C ‖ height(8) → canonical commit that finalized that block."""
BLOCK_HASH = b"K"
"""K ‖ block hash → height(8)."""
TX_INDEX = b"T"
"""T ‖ tx hash → height(8) ‖ index(4)."""
RECEIPTS = b"R"
"""R ‖ height(8) → canonical list of full receipts (ok, code, message, events)."""
BLOCK_EVENTS = b"E"
"""E ‖ height(8) → canonical list of events of the block's begin-block work (deadlines, R15)."""
PROPOSAL_BLOCKS = b"P"
"""P ‖ height(8) ‖ block hash → canonical bytes of a block this validator proposed or
precommitted, kept so that a restarted validator can restore its lock (R27)."""
TREE = b"Dn"
"""Dn ‖ position → the record of one node of the current state tree (R35;
marketplace_tx.rules.state_tree: position = depth(2) ‖ path prefix)."""
UNDO = b"Du"
"""Du ‖ height(8) → canonical list [[key, value before that block or nil], …] sorted by
key: the undo record of the block, kept for the last `keep_state` heights (R40)."""
HEADERS = b"Dh"
"""Dh ‖ height(8) → canonical header of a block whose body this node does not keep but
whose header it must (R40): a change point whose block was pruned or that state sync
verified, and the snapshot height a state-synced node started from. Its commit stays
under `C`."""
CHANGE_POINTS = b"J"
"""J ‖ height(8) → canonical sorted list of the next set's addresses, for every block
whose next_validators_hash differs from its validators_hash (a change point, R37)."""
META = b"M"
"""M ‖ name → metadata: head, genesis hash, state base, oldest kept block, restore marker."""

HEAD_KEY = META + b"head"
STATE_BASE_KEY = META + b"state_base"
"""height(8): the snapshot height a state-synced node restored (R39); absent on a node
that started from genesis. Nothing below it was ever stored here (410 `pruned`)."""
OLDEST_BLOCK_KEY = META + b"oldest_block"
"""height(8): the oldest height whose block is stored (R40, node/pruning.py); absent: 1."""
RESTORE_KEY = META + b"restore"
"""Present while a state-sync restore is under way (node/state_restore.py owns its value).
While it is, the state and tree hold a partial snapshot and the head is still genesis:
nothing may read the state (the node serves /status and snapshots only)."""
GENESIS_HASH_KEY = META + b"genesis_hash"
GENESIS_STATE_ROOT_KEY = META + b"genesis_state_root"
"""The state root after genesis (no header holds it: proofs at height 0 are checked against it)."""


class StorageError(Exception):
    """The database cannot be used: wrong genesis, corruption, or locked by another node."""


@dataclass(frozen=True)
class TxLocation:
    """Where a committed transaction sits."""

    height: int
    """The block's height."""
    index: int
    """Its position in the block."""


def _height_key(prefix: bytes, height: int) -> bytes:
    return prefix + struct.pack(">Q", height)


class ChainStore:
    """The node's LevelDB database; also the committed `StateReader` for the state machine."""

    def __init__(
        self,
        path: Path | str,
        write_buffer_bytes: int = 32 * 1024 * 1024,
        cache_bytes: int = 8 * 1024 * 1024,
        bloom_filter_bits: int = 10,
        keep_state: int = 1000,
    ) -> None:
        """Open (or create) the database at `path` with LevelDB's write buffer, read cache
        and Bloom filter bits per key (`[storage]` in config.toml; docs/performance.md),
        keeping state proofs for the last `keep_state` heights (≥ 1, R40)."""
        if keep_state < 1:
            raise ValueError("keep_state must be at least 1 (R40)")
        self.keep_state = keep_state
        """State proofs are possible for the last this many heights (R40)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        try:
            self.db = plyvel.DB(
                str(path),
                create_if_missing=True,
                write_buffer_size=write_buffer_bytes,
                lru_cache_size=cache_bytes,
                bloom_filter_bits=bloom_filter_bits,
            )
        except plyvel.IOError as error:
            raise StorageError(f"cannot open the database at {path}: {error}") from None
        self._state = self.db.prefixed_db(STATE)
        self._tree = self.db.prefixed_db(TREE)
        self._tree_cache: dict[bytes, bytes] = {}

    def close(self) -> None:
        """Close the database."""
        if not self.db.closed:
            self.db.close()

    # --- StateReader -----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The committed state value under `key`."""
        return self._state.get(key)

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Committed state pairs with start ≤ key < end, ascending."""
        yield from self._state.iterator(start=start, stop=end)

    def tree_node(self, position: bytes) -> bytes | None:
        """The committed record of the state tree node at `position` (TreeReader, R35).

        Records of the upper levels (depth ≤ `TREE_CACHE_DEPTH`), which every block reads,
        are kept in memory once read; `commit_block` updates them after its batch is written.
        """
        if position[0] or position[1] > TREE_CACHE_DEPTH:
            return self._tree.get(position)
        record = self._tree_cache.get(position)
        if record is None:
            record = self._tree.get(position)
            if record is not None:
                self._tree_cache[position] = record
        return record

    def _cache_tree(self, update: TreeUpdate) -> None:
        """Bring the cached upper records in line with a tree update just written."""
        cache = self._tree_cache
        for position in update.deletes:
            cache.pop(position, None)
        for position, record in update.puts.items():
            if not position[0] and position[1] <= TREE_CACHE_DEPTH:
                cache[position] = record

    # --- genesis and head ------------------------------------------------------------

    def initialize(self, genesis: Genesis) -> ChainTip:
        """Write the genesis state on first use, or check the stored genesis matches.

        Returns the current head (height 0 right after genesis).
        """
        stored = self.db.get(GENESIS_HASH_KEY)
        if stored is not None:
            if stored != genesis.hash:
                raise StorageError(
                    f"the database belongs to genesis {stored.hex()}, not {genesis.hash.hex()}"
                )
            head = self.head()
            assert head is not None
            if self.restoring:
                return head  # a state-sync restore was interrupted: node/state_restore.py resumes or wipes it
            self._check_tree(head)
            self._prune_undo(head.height)
            return head
        with self.db.write_batch(sync=True, transaction=True) as batch:
            return self.write_genesis(batch, genesis)

    def write_genesis(self, batch: Any, genesis: Genesis) -> ChainTip:
        """Put the genesis state, its tree, the genesis metadata and the genesis head into
        `batch` (`initialize`; node/state_restore.py's `abandon` writes it back the same way)."""
        tip, changes = genesis_changes(genesis)
        tree = update_tree(MemoryTree(), changes)
        if tree.root != tip.state_root:
            raise StorageError(f"the genesis tree root {tree.root.hex()} is not its state root {tip.state_root.hex()}")
        for key, value in changes.items():
            if value is not None:
                batch.put(STATE + key, value)
        _write_tree(batch, tree)
        batch.put(GENESIS_HASH_KEY, genesis.hash)
        batch.put(GENESIS_STATE_ROOT_KEY, tip.state_root)
        batch.put(HEAD_KEY, _encode_tip(tip))
        return tip

    def forget_cached_tree(self) -> None:
        """Drop the cached upper tree records: the tree was rewritten outside `commit_block`
        (node/state_restore.py)."""
        self._tree_cache.clear()

    def _check_tree(self, head: ChainTip) -> None:
        """The stored tree's root must be the head's state root (R35), or nothing can be proven."""
        if self._tree.get(ROOT_POSITION) is None:
            raise StorageError(
                "this database holds a state but no state tree: it was written by protocol v1 "
                "(or an older version); v2 is a new genesis, start this node from a fresh home"
            )
        root = tree_root(self)
        if root != head.state_root:
            raise StorageError(
                f"the stored state tree root {root.hex()} is not the head's state root "
                f"{head.state_root.hex()} (height {head.height}): the database is corrupt"
            )

    def _prune_undo(self, head_height: int) -> None:
        """Delete every undo record no kept height needs (after `keep_state` was lowered)."""
        stop = _height_key(UNDO, max(0, head_height - self.keep_state + 2))
        with self.db.write_batch(sync=True) as batch:
            for key in self.db.iterator(start=UNDO, stop=stop, include_value=False):
                batch.delete(key)

    def head(self) -> ChainTip | None:
        """The last final block (height 0: genesis), or None before `initialize`."""
        raw = self.db.get(HEAD_KEY)
        return None if raw is None else _decode_tip(raw)

    @property
    def restoring(self) -> bool:
        """True while a state-sync restore is under way (`RESTORE_KEY`): the state is partial."""
        return self.db.get(RESTORE_KEY) is not None

    def state_base(self) -> int | None:
        """The snapshot height this node was state-synced from (R39), or None (from genesis)."""
        raw = self.db.get(STATE_BASE_KEY)
        return None if raw is None else struct.unpack(">Q", raw)[0]

    def oldest_block_height(self) -> int:
        """The oldest height whose block is stored (R40): 1 on an unpruned node from genesis,
        state base + 1 after state sync, higher once pruned."""
        raw = self.db.get(OLDEST_BLOCK_KEY)
        if raw is not None:
            return struct.unpack(">Q", raw)[0]
        base = self.state_base()
        return 1 if base is None else base + 1

    def header(self, height: int) -> Header | None:
        """The header at `height`: of a stored block, or kept alone (`HEADERS`), or None."""
        raw = self.db.get(_height_key(BLOCK, height))
        if raw is not None:
            return header_of_block(raw)
        raw = self.db.get(_height_key(HEADERS, height))
        return None if raw is None else Header.from_map(decode_trusted(raw))

    # --- writing a block -------------------------------------------------------------

    def commit_block(self, result: BlockResult, commit: Commit) -> ChainTip:
        """Write a final block and everything it changed in one atomic, synced batch."""
        block = result.block
        height = block.header.height
        head = self.head()
        if head is None or height != head.height + 1 or block.header.prev_hash != head.block_hash:
            raise StorageError(f"block {height} does not follow the head")
        if commit.block_hash != block.hash or commit.height != height:
            raise StorageError(f"the commit is not for block {height}")
        tree = update_tree(self, result.changes) if result.tree is None else result.tree
        if tree.root != block.header.state_root:
            raise StorageError(f"the tree of block {height} does not give its state root")
        tip = ChainTip(height, block.hash, block.header.time, block.header.state_root)
        height_bytes = struct.pack(">Q", height)
        index_writes = block_index_writes(self, result)  # reads the state before this block
        undo = self._undo_record(result) if self.keep_state > 1 else None  # reads the state before this block too
        next_set = self._change_point(result)
        with self.db.write_batch(sync=True, transaction=True) as batch:
            batch.put(BLOCK + height_bytes, block.encode())
            batch.put(COMMIT + height_bytes, commit.encode())
            batch.put(BLOCK_HASH + block.hash, height_bytes)
            for index, tx in enumerate(result.transactions):
                batch.put(TX_INDEX + tx.hash, height_bytes + struct.pack(">I", index))
            batch.put(RECEIPTS + height_bytes, codec.encode([r.to_map() for r in result.receipts]))
            if result.block_events:
                batch.put(BLOCK_EVENTS + height_bytes, codec.encode(list(result.block_events)))
            for key, value in result.changes.items():
                if value is None:
                    batch.delete(STATE + key)
                else:
                    batch.put(STATE + key, value)
            _write_tree(batch, tree)
            if undo is not None:
                batch.put(UNDO + height_bytes, undo)
                if height - self.keep_state + 1 >= 1:
                    batch.delete(_height_key(UNDO, height - self.keep_state + 1))
            if next_set is not None:
                batch.put(CHANGE_POINTS + height_bytes, next_set)
            for key in index_writes.deletes:
                batch.delete(key)
            for key, value in index_writes.puts.items():
                batch.put(key, value)
            batch.put(HEAD_KEY, _encode_tip(tip))
        self._cache_tree(tree)
        return tip

    def _undo_record(self, result: BlockResult) -> bytes:
        """The values the block's changed keys held before it: canonical [[key, value or nil], …]."""
        return codec.encode([[key, self._state.get(key)] for key in sorted(result.changes)])

    def _change_point(self, result: BlockResult) -> bytes | None:
        """The next set's canonical address list if the block is a change point (R37), else None."""
        header = result.block.header
        if header.next_validators_hash == header.validators_hash:
            return None
        raw = result.changes[VALIDATORS] if VALIDATORS in result.changes else self.get(VALIDATORS)
        next_set = [] if raw is None else sorted(decode_trusted(raw)["validators"])  # R35: `v` signs h+1
        if validators_hash(next_set) != header.next_validators_hash:
            raise StorageError(f"the state after block {header.height} disagrees with its next_validators_hash")
        return codec.encode(next_set)

    # --- reading ---------------------------------------------------------------------

    def block_bytes(self, height: int) -> bytes | None:
        """Canonical bytes of the block at `height`."""
        return self.db.get(_height_key(BLOCK, height))

    def block(self, height: int) -> Block | None:
        """The block at `height`, decoded."""
        raw = self.block_bytes(height)
        return None if raw is None else decode_block(raw, len(raw))

    def commit(self, height: int) -> Commit | None:
        """The commit that finalized the block at `height`."""
        raw = self.db.get(_height_key(COMMIT, height))
        return None if raw is None else decode_commit(raw)

    def height_of_block(self, block_hash: bytes) -> int | None:
        """The height of the block with hash `block_hash`."""
        raw = self.db.get(BLOCK_HASH + block_hash)
        return None if raw is None else struct.unpack(">Q", raw)[0]

    def object_position(self, object_id: bytes) -> bytes | None:
        """The index position recorded for a shop, listing, order or review (node/indexer.py)."""
        return self.db.get(OBJECT_POSITIONS + object_id)

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        """Where a committed transaction is, or None."""
        raw = self.db.get(TX_INDEX + tx_hash)
        if raw is None:
            return None
        height, index = struct.unpack(">QI", raw)
        return TxLocation(height, index)

    def receipts(self, height: int) -> list[Receipt]:
        """The full receipts of the block at `height`."""
        raw = self.db.get(_height_key(RECEIPTS, height))
        return [] if raw is None else [Receipt.from_map(item) for item in codec.decode(raw)]

    def save_proposal(self, height: int, block_hash: bytes, raw: bytes) -> None:
        """Durably keep a block this validator proposed or precommitted (R27)."""
        self.db.put(PROPOSAL_BLOCKS + struct.pack(">Q", height) + block_hash, raw, sync=True)

    def saved_proposal(self, height: int, block_hash: bytes) -> bytes | None:
        """A block kept by `save_proposal`."""
        return self.db.get(PROPOSAL_BLOCKS + struct.pack(">Q", height) + block_hash)

    def prune_proposals(self, below_height: int) -> None:
        """Forget kept proposals of heights below `below_height`."""
        stop = PROPOSAL_BLOCKS + struct.pack(">Q", below_height)
        with self.db.write_batch() as batch:
            for key in self.db.iterator(start=PROPOSAL_BLOCKS, stop=stop, include_value=False):
                batch.delete(key)

    def block_events(self, height: int) -> list[dict[str, Any]]:
        """Events of the work done at the start of block `height` (deadlines that fired)."""
        raw = self.db.get(_height_key(BLOCK_EVENTS, height))
        return [] if raw is None else codec.decode(raw)

    @contextmanager
    def read_view(self) -> Iterator[ReadView]:
        """A consistent view of state and indexes at one moment (a LevelDB snapshot)."""
        snapshot = self.db.snapshot()
        try:
            yield ReadView(snapshot)
        finally:
            snapshot.close()

    def approximate_size(self) -> int:
        """Bytes LevelDB uses on disk, approximately."""
        return self.db.approximate_size(b"\x00", b"\xff")


class ReadView:
    """Reads of one LevelDB snapshot: the committed state (a `StateReader`) and the
    read-model indexes, all as of the same block, whatever is committed meanwhile."""

    def __init__(self, snapshot: Any) -> None:
        self._snapshot = snapshot

    def get(self, key: bytes) -> bytes | None:
        """The state value under `key`."""
        return self._snapshot.get(STATE + key)

    def tree_node(self, position: bytes) -> bytes | None:
        """The record of the state tree node at `position` (TreeReader, R35)."""
        return self._snapshot.get(TREE + position)

    def head(self) -> ChainTip | None:
        """The last final block as of this view."""
        raw = self._snapshot.get(HEAD_KEY)
        return None if raw is None else _decode_tip(raw)

    def header(self, height: int) -> Header | None:
        """The header at `height` (without decoding the block's transactions): of a stored
        block, or kept alone (`HEADERS`: change points and the state-sync base, R40)."""
        raw = self._snapshot.get(_height_key(BLOCK, height))
        if raw is not None:
            return header_of_block(raw)
        raw = self._snapshot.get(_height_key(HEADERS, height))
        return None if raw is None else Header.from_map(decode_trusted(raw))

    def genesis_state_root(self) -> bytes | None:
        """The state root after genesis."""
        return self._snapshot.get(GENESIS_STATE_ROOT_KEY)

    def commit(self, height: int) -> Commit | None:
        """The commit that finalized the block at `height`."""
        raw = self._snapshot.get(_height_key(COMMIT, height))
        return None if raw is None else decode_commit(raw)

    def undo_records(self, first: int, last: int) -> Iterator[tuple[int, list[tuple[bytes, bytes | None]]]]:
        """The undo records of blocks first … last, ascending: (height, [(key, value before)])."""
        for key, raw in self._snapshot.iterator(start=_height_key(UNDO, first), stop=_height_key(UNDO, last + 1)):
            yield struct.unpack(">Q", key[len(UNDO):])[0], [(item[0], item[1]) for item in decode_trusted(raw)]

    def undo_entry_count(self, first: int, last: int) -> int:
        """How many entries the undo records of blocks first … last hold (keys changed, with
        repeats): the size of an old-height rebuild, read from the records' array headers
        without decoding them."""
        total = 0
        for _, raw in self._snapshot.iterator(start=_height_key(UNDO, first), stop=_height_key(UNDO, last + 1)):
            total += _array_length(raw)
        return total

    def has_undo_record(self, height: int) -> bool:
        """Whether the undo record of block `height` is kept."""
        return self._snapshot.get(_height_key(UNDO, height)) is not None

    def first_undo_height(self) -> int | None:
        """The oldest block whose undo record is kept, or None."""
        for key in self._snapshot.iterator(prefix=UNDO, include_value=False):
            return struct.unpack(">Q", key[len(UNDO):])[0]
        return None

    def change_point_sets(self, after: int, limit: int) -> list[tuple[int, tuple[bytes, ...]]]:
        """Up to `limit` change points (R37) above height `after`: (height, next set), ascending."""
        found: list[tuple[int, tuple[bytes, ...]]] = []
        start = _height_key(CHANGE_POINTS, after + 1)
        for key, raw in self._snapshot.iterator(start=start, stop=_prefix_end(CHANGE_POINTS)):
            if len(found) >= limit:
                break
            found.append((struct.unpack(">Q", key[len(CHANGE_POINTS):])[0], tuple(decode_trusted(raw))))
        return found

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """State pairs with start ≤ key < end, ascending."""
        for key, value in self._snapshot.iterator(start=STATE + start, stop=STATE + end):
            yield key[len(STATE):], value

    def entries(
        self, start: bytes, stop: bytes, reverse: bool = False, include_start: bool = True
    ) -> Iterator[tuple[bytes, bytes]]:
        """Raw index pairs (node/indexer.py) with start ≤ key < stop; descending if `reverse`."""
        yield from self._snapshot.iterator(start=start, stop=stop, reverse=reverse, include_start=include_start)


TREE_CACHE_DEPTH = 14
"""Tree records at this depth or above stay in memory once read: at most 2^15 − 1 records
(~7 MB when full); every block reads its keys' paths through them (docs/performance.md)."""


def _write_tree(batch: Any, update: TreeUpdate) -> None:
    """Put a tree update's node writes into a write batch."""
    for position in update.deletes:
        batch.delete(TREE + position)
    for position, record in update.puts.items():
        batch.put(TREE + position, record)


def _array_length(raw: bytes) -> int:
    """The item count in the header of the canonical msgpack array `raw`."""
    if 0x90 <= raw[0] <= 0x9F:
        return raw[0] - 0x90
    if raw[0] == 0xDC:
        return int.from_bytes(raw[1:3], "big")
    if raw[0] == 0xDD:
        return int.from_bytes(raw[1:5], "big")
    raise StorageError("an undo record is not an array")


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix` (its last byte is below 0xff)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def header_of_block(raw: bytes) -> Header:
    """The header of canonical block bytes this node stored, reading past the evidence but
    not the transactions (the map's keys are sorted: evidence, header, last_commit, txs)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(raw) + 1)
    unpacker.feed(raw)
    for _ in range(unpacker.read_map_header()):
        if unpacker.unpack() == "header":
            return Header.from_map(unpacker.unpack())
        unpacker.skip()
    raise StorageError("a stored block has no header")


def encode_head(tip: ChainTip) -> bytes:
    """The value of `HEAD_KEY` for `tip` (node/state_restore.py writes a restored head)."""
    return _encode_tip(tip)


def _encode_tip(tip: ChainTip) -> bytes:
    return codec.encode(
        {"block_hash": tip.block_hash, "height": tip.height, "state_root": tip.state_root, "time": tip.time}
    )


def _decode_tip(raw: bytes) -> ChainTip:
    value: dict[str, Any] = codec.decode(raw)
    return ChainTip(value["height"], value["block_hash"], value["time"], value["state_root"])
