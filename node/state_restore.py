"""Writing a verified state-sync snapshot into the node's LevelDB, kill -9 safe (PROTOCOL R39, R40).

The joiner (node/state_sync.py) verifies the snapshot's header by the light client
(R37) and every chunk against the manifest (R39, `snapshot_tree.check_chunk_tree`);
`StateRestore` writes what it verified, in **synced atomic batches** only:

1. `begin`: the restore marker (`RESTORE_KEY`: manifest, header, commit, change points,
   `wiped: false`) FIRST, then the genesis state (or an earlier partial restore) is wiped
   in batches of at most `WIPE_BATCH_KEYS` keys: the state (`S`), the tree (`Dn`), every
   read index of node/indexer.py, the object positions (`I`) and the chunks' done marks;
   then the marker again with `wiped: true`.
2. `write_chunk`: ONE batch per chunk: its state entries, its tree records (its own record
   at `chunk_position(d, index)`), the read indexes and object positions of its shops,
   listings, orders and reviews (`indexer.restored_index_writes`), and its done mark
   (`RESTORE_CHUNK_PREFIX` ‖ index(4)).
3. `finish`: the chunks' own records read back, the tree above them (`upper_tree`) must
   give the manifest's state_root, then ONE batch: the upper records, the header of H
   (`Dh`) and its commit (`C`), the change points verified on the way (`Dh`, `C`, `J`),
   the state base H, the oldest block H + 1, the head H, and the marker and done marks
   deleted. Only this batch moves the head.

What "kill -9 safe" means: whatever instant the process dies, the store is either the
genesis store it was, or marked restoring (the marker is there: `ChainStore.initialize`
skips the tree check, the node serves no state and resumes or starts over), or the whole
snapshot at head H. It never holds a state that looks whole but is not the snapshot's.
`pending` says what survived: the manifest, and which chunks are done (none while the
wipe is unfinished: `write_chunk` and `finish` finish it first). `abandon` gives up:
marker back to `wiped: false`, wipe, then one batch writes the genesis state back and
deletes the marker.

Test-only crash points (`crash_at`, from `MARKETCHAIN_TEST_RESTORE_CRASH` via the fault
plan) SIGKILL the process: `begin` (marker written, nothing wiped), `wipe` (after the
first wipe batch), `chunk:<k>` (after the batch of the (k+1)-th chunk this object
writes), `before_finish` (checks done, batch not written), `after_finish` (batch written).
"""

from __future__ import annotations

import os
import signal
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from marketplace_tx.chain.block import Header, decode_commit
from marketplace_tx.chain.change_point import ChangePoint
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import EMPTY
from marketplace_tx.rules.snapshot_tree import ChunkTree, chunk_position, upper_tree
from marketplace_tx.rules.snapshots import (
    InvalidSnapshot,
    Manifest,
    check_manifest,
    manifest_from_map,
)
from marketplace_tx.rules.state_keys import VALIDATORS
from marketplace_tx.rules.state_transition import ChainTip
from marketplace_tx.rules.state_tree import record_hash
from marketplace_tx.rules.validators import validators_hash
from marketplace_tx.speedups import decode_trusted
from node import indexer
from node.storage import (
    CHANGE_POINTS,
    COMMIT,
    GENESIS_HASH_KEY,
    HEAD_KEY,
    HEADERS,
    META,
    OLDEST_BLOCK_KEY,
    RESTORE_KEY,
    STATE,
    STATE_BASE_KEY,
    TREE,
    ChainStore,
    StorageError,
    encode_head,
)

RESTORE_CHUNK_PREFIX = META + b"restore_chunk"
"""M restore_chunk ‖ index(4, big-endian) → empty: chunk `index` of the marker's manifest is written."""
WIPE_BATCH_KEYS = 10_000
"""Most keys one wipe batch deletes: a wipe of a large partial restore is many small batches."""
INDEX_PREFIXES = (
    indexer.ACCOUNT_TXS,
    indexer.SHOPS,
    indexer.SHOPS_BY_OWNER,
    indexer.LISTINGS,
    indexer.LISTINGS_BY_SHOP,
    indexer.LISTINGS_BY_TAG,
    indexer.LISTINGS_BY_WORD,
    indexer.ORDERS,
    indexer.ORDERS_BY_BUYER,
    indexer.ORDERS_BY_MERCHANT,
    indexer.ORDERS_BY_SHOP,
    indexer.ORDERS_BY_STATE,
    indexer.REVIEWS_BY_SHOP,
    indexer.OBJECT_POSITIONS,
)
"""Every read index of node/indexer.py (and the object positions)."""
WIPED_PREFIXES = (STATE, TREE, *INDEX_PREFIXES, RESTORE_CHUNK_PREFIX)
"""What a wipe deletes. Kept: the genesis metadata, the head, the sign guard's records
(node/sign_guard.py, `Z`), kept proposals (`P`) and the marker itself."""
CRASH_POINTS = ("begin", "wipe", "before_finish", "after_finish")
"""Test crash points besides `chunk:<k>`."""


@dataclass(frozen=True)
class RestoreProgress:
    """What an interrupted restore had done when the node stopped (`StateRestore.pending`)."""

    manifest: Manifest
    """The snapshot being restored."""
    header: bytes
    """Canonical header of the snapshot height (verified by the joiner, R37)."""
    commit: bytes
    """Canonical commit that finalized that header."""
    change_points: tuple[ChangePoint, ...]
    """The change points below the snapshot height the light client walked (R37, R40)."""
    done: frozenset[int]
    """Indexes of the chunks already written (none until the wipe finished)."""
    wiped: bool = True
    """Whether the wipe of the old state finished (else the next write finishes it first)."""


def _chunk_mark(index: int) -> bytes:
    return RESTORE_CHUNK_PREFIX + struct.pack(">I", index)


def _height_key(prefix: bytes, height: int) -> bytes:
    return prefix + struct.pack(">Q", height)


def _encode_marker(progress: RestoreProgress) -> bytes:
    points = [
        [point.height, point.header, point.commit.encode(), list(point.next_validators)]
        for point in progress.change_points
    ]
    return codec.encode({
        "change_points": points,
        "commit": progress.commit,
        "header": progress.header,
        "manifest": progress.manifest.encode(),
        "wiped": progress.wiped,
    })


def _decode_marker(raw: bytes, done: frozenset[int]) -> RestoreProgress:
    value: dict[str, Any] = codec.decode(raw)
    points = tuple(
        ChangePoint(height, header, decode_commit(commit), tuple(next_set))
        for height, header, commit, next_set in value["change_points"]
    )
    manifest = manifest_from_map(codec.decode(value["manifest"]))
    wiped = bool(value["wiped"])
    return RestoreProgress(manifest, value["header"], value["commit"], points, done if wiped else frozenset(), wiped)


def _parse_crash_point(crash_at: str | None) -> str | None:
    if crash_at is None or crash_at in CRASH_POINTS:
        return crash_at
    kind, _, number = crash_at.partition(":")
    if kind != "chunk" or not number.isdigit():
        raise ValueError(f"crash_at must be one of {CRASH_POINTS} or chunk:<k>, not {crash_at!r}")
    return crash_at


def _check_snapshot(manifest: Manifest, header_bytes: bytes, commit_bytes: bytes,
                    change_points: Sequence[ChangePoint]) -> None:
    """Cheap consistency of what the joiner verified (ValueError: a caller's mistake)."""
    check_manifest(manifest)
    header = Header.from_map(codec.decode(header_bytes))
    if manifest.height < 1 or header.height != manifest.height or header.state_root != manifest.state_root:
        raise ValueError("the header is not the manifest's height and state_root")
    commit = decode_commit(commit_bytes)
    if commit.height != header.height or commit.block_hash != header.hash:
        raise ValueError("the commit does not finalize the header")
    previous = 0
    for point in change_points:
        if not previous < point.height < header.height:
            raise ValueError("change points ascend strictly, below the snapshot height")
        previous = point.height


class StateRestore:
    """Writes one verified snapshot into `store` (the contract of issue 15: begin,
    write_chunk for every chunk in any order, finish; pending and abandon after a stop)."""

    def __init__(self, store: ChainStore, crash_at: str | None = None, wipe_batch_keys: int = WIPE_BATCH_KEYS) -> None:
        """`crash_at`: a test crash point (module docstring); `wipe_batch_keys`: keys per wipe batch."""
        self.store = store
        """The node's database."""
        self.crash_at = _parse_crash_point(crash_at)
        """Where this process kills itself (tests only), or None."""
        if wipe_batch_keys < 1:
            raise ValueError("wipe_batch_keys must be at least 1")
        self.wipe_batch_keys = wipe_batch_keys
        """Most keys one wipe batch deletes."""
        self.chunks_written = 0
        """Chunk batches this object wrote (the `chunk:<k>` crash point counts them)."""
        self._marker: tuple[bytes, RestoreProgress] | None = None
        """The marker's bytes as last read or written here, decoded (re-read when they differ)."""
        self._lock = threading.Lock()
        """One write at a time (the joiner may call from worker threads): a wipe never runs
        beside a chunk's batch."""

    def _crash(self, point: str) -> None:
        if self.crash_at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    # --- reading the marker -----------------------------------------------------------

    def pending(self) -> RestoreProgress | None:
        """The interrupted (or running) restore, or None if the store is not restoring."""
        raw = self.store.db.get(RESTORE_KEY)
        if raw is None:
            return None
        done = frozenset(
            struct.unpack(">I", key[len(RESTORE_CHUNK_PREFIX):])[0]
            for key in self.store.db.iterator(prefix=RESTORE_CHUNK_PREFIX, include_value=False)
        )
        return _decode_marker(raw, done)

    def _current(self) -> RestoreProgress:
        """The restore under way as the store says now (never a stale copy: another object may
        have abandoned or finished it), its wipe finished (finishing it first if a stop cut
        it short). Its `done` is not read here."""
        raw = self.store.db.get(RESTORE_KEY)
        if raw is None:
            raise StorageError("no state-sync restore is under way")
        if self._marker is None or self._marker[0] != raw:
            self._marker = (raw, _decode_marker(raw, frozenset()))
        progress = self._marker[1]
        if not progress.wiped:
            self._wipe()
            progress = replace(progress, done=frozenset(), wiped=True)
            self._write_marker(progress)
        return progress

    def _write_marker(self, progress: RestoreProgress) -> None:
        """Write the marker, synced."""
        raw = _encode_marker(progress)
        self.store.db.put(RESTORE_KEY, raw, sync=True)
        self._marker = (raw, progress)

    # --- starting and wiping ------------------------------------------------------------

    def begin(self, manifest: Manifest, header: bytes, commit: bytes, change_points: Sequence[ChangePoint]) -> None:
        """Start restoring `manifest` (header and commit: canonical bytes the joiner verified,
        R37), replacing the genesis state or any earlier partial restore."""
        with self._lock:
            self._begin(manifest, header, commit, change_points)

    def _begin(self, manifest: Manifest, header: bytes, commit: bytes, change_points: Sequence[ChangePoint]) -> None:
        head = self.store.head()
        if head is None:
            raise StorageError("initialize the store with its genesis before a restore")
        if head.height != 0 and not self.store.restoring:
            raise StorageError(f"the store already holds blocks up to {head.height}: state sync starts from genesis")
        _check_snapshot(manifest, header, commit, change_points)
        progress = RestoreProgress(manifest, header, commit, tuple(change_points), frozenset(), False)
        self._write_marker(progress)  # first: a stop from here on is "restoring"
        self._crash("begin")
        self._current()

    def _wipe(self) -> None:
        """Delete every key under `WIPED_PREFIXES`, `wipe_batch_keys` per synced batch."""
        db = self.store.db
        self.store.forget_cached_tree()
        for prefix in WIPED_PREFIXES:
            while True:
                keys = []
                for key in db.iterator(prefix=prefix, include_value=False):
                    keys.append(key)
                    if len(keys) >= self.wipe_batch_keys:
                        break
                if not keys:
                    break
                with db.write_batch(sync=True) as batch:
                    for key in keys:
                        batch.delete(key)
                self._crash("wipe")

    # --- chunks -----------------------------------------------------------------------

    def write_chunk(self, index: int, tree: ChunkTree) -> None:
        """Write chunk `index` (checked by `check_chunk_tree` against the marker's manifest)
        and everything derived from it in one synced batch. Writing it again changes nothing."""
        with self._lock:
            self._write_chunk(index, tree)

    def _write_chunk(self, index: int, tree: ChunkTree) -> None:
        progress = self._current()
        manifest = progress.manifest
        if not 0 <= index < len(manifest.chunks):
            raise InvalidSnapshot(f"chunk {index} is not in the manifest")
        summary = manifest.chunks[index]
        found = EMPTY if tree.root_record is None else record_hash(tree.root_record)
        if found != summary.hash or len(tree.entries) != summary.count:
            raise InvalidSnapshot(f"chunk {index} is not the manifest's (hash or count)")
        index_writes = indexer.restored_index_writes(index, tree.entries)
        with self.store.db.write_batch(sync=True, transaction=True) as batch:
            for key, value in tree.entries:
                batch.put(STATE + key, value)
            for position, record in tree.records.items():
                batch.put(TREE + position, record)
            if tree.root_record is not None:
                batch.put(TREE + chunk_position(manifest.chunk_depth, index), tree.root_record)
            for key, value in index_writes.puts.items():
                batch.put(key, value)
            batch.put(_chunk_mark(index), b"")
        self.chunks_written += 1
        self._crash(f"chunk:{self.chunks_written - 1}")

    # --- the end ------------------------------------------------------------------------

    def finish(self) -> ChainTip:
        """Complete the tree, check its root is the manifest's state_root (StorageError if
        not), and make the store a normal store at head H in one synced batch."""
        with self._lock:
            return self._finish()

    def _finish(self) -> ChainTip:
        progress = self._current()
        manifest = progress.manifest
        depth, count = manifest.chunk_depth, len(manifest.chunks)
        written = self.pending()
        missing = count - (0 if written is None else len(written.done))
        if missing:
            raise StorageError(f"{missing} of {count} chunks are not written yet")
        records = [self.store.db.get(TREE + chunk_position(depth, index)) for index in range(count)]
        upper = upper_tree(depth, records)
        del records
        if upper.root != manifest.state_root:
            raise StorageError(
                f"the restored tree's root {upper.root.hex()} is not the snapshot's state_root {manifest.state_root.hex()}"
            )
        header = Header.from_map(codec.decode(progress.header))
        next_set = self._next_set(header)
        tip = ChainTip(header.height, header.hash, header.time, header.state_root)
        self._crash("before_finish")
        with self.store.db.write_batch(sync=True, transaction=True) as batch:
            for position in upper.deletes:
                batch.delete(TREE + position)
            for position, record in upper.puts.items():
                batch.put(TREE + position, record)
            batch.put(_height_key(HEADERS, tip.height), progress.header)
            batch.put(_height_key(COMMIT, tip.height), progress.commit)
            if next_set is not None:
                batch.put(_height_key(CHANGE_POINTS, tip.height), next_set)
            for point in progress.change_points:
                batch.put(_height_key(HEADERS, point.height), point.header)
                batch.put(_height_key(COMMIT, point.height), point.commit.encode())
                batch.put(_height_key(CHANGE_POINTS, point.height), codec.encode(sorted(point.next_validators)))
            batch.put(STATE_BASE_KEY, struct.pack(">Q", tip.height))
            batch.put(OLDEST_BLOCK_KEY, struct.pack(">Q", tip.height + 1))
            batch.put(HEAD_KEY, encode_head(tip))
            for index in range(count):
                batch.delete(_chunk_mark(index))
            batch.delete(RESTORE_KEY)
        self.store.forget_cached_tree()
        self._marker = None
        self._crash("after_finish")
        return tip

    def _next_set(self, header: Header) -> bytes | None:
        """The canonical next set if the snapshot height is itself a change point (R37), from
        the restored `v` (R35: the set that signs H + 1), else None."""
        if header.next_validators_hash == header.validators_hash:
            return None
        raw = self.store.get(VALIDATORS)
        next_set = [] if raw is None else sorted(decode_trusted(raw)["validators"])
        if validators_hash(next_set) != header.next_validators_hash:
            raise StorageError("the restored state's validators do not hash to the header's next_validators_hash")
        return codec.encode(next_set)

    def abandon(self, genesis: Genesis) -> ChainTip:
        """Give up the restore: wipe it and write `genesis`'s state back (the store is then
        the fresh genesis store it was). StorageError if no restore is under way."""
        with self._lock:
            return self._abandon(genesis)

    def _abandon(self, genesis: Genesis) -> ChainTip:
        progress = self.pending()
        if progress is None:
            raise StorageError("no state-sync restore is under way")
        if self.store.db.get(GENESIS_HASH_KEY) != genesis.hash:
            raise StorageError("the store belongs to another genesis")
        self._write_marker(replace(progress, done=frozenset(), wiped=False))  # done marks no longer count
        self._wipe()
        with self.store.db.write_batch(sync=True, transaction=True) as batch:
            tip = self.store.write_genesis(batch, genesis)
            batch.delete(RESTORE_KEY)
        self.store.forget_cached_tree()
        self._marker = None
        return tip
