"""Pruning of old blocks (R40): a node with `[storage] keep_blocks = N` keeps the last N blocks.

After every stored block `Pruner.after_block` wakes a background thread (one job at a
time, never the event loop) that deletes the blocks below

    min(head − keep_blocks + 1, floor())

where `floor()` is the oldest snapshot height the node still serves (node/snapshot_store.py;
blocks from it on stay so that its header and commit can be served). For every pruned
height it deletes the block (`B`), its hash index (`K`), the transaction index entries of
its transactions (`T`), its receipts (`R`), its begin-block events (`E`) and the
account-history rows its transactions wrote (`A`, recomputed by
`node.indexer.account_history_keys` exactly as the block wrote them), and its commit
(`C`) — except at a **change point** (`J` ‖ h present, R37): there the header moves to
`Dh` ‖ h and the commit and `J` stay forever, so `/light/changes` never answers `pruned`.
The head is never pruned (keep_blocks ≥ 1), so its commit stays (R29). Object positions
(`I`) are never pruned: node/indexer.py finds the index rows of old objects through them.

Work is done in **bounded batches** (`BATCH_BLOCKS` blocks or `BATCH_KEYS` deleted keys,
whichever comes first; always at least one block), each one atomic and synced together
with the new `OLDEST_BLOCK_KEY`: a crash between (or inside) batches leaves a store whose
oldest-block key says exactly which blocks exist. Deleted ranges are compacted once
`COMPACT_AFTER_KEYS` keys were deleted since the last compaction (the hash-keyed indexes
only once `keep_blocks` more blocks were pruned: `Pruner.compact`), so that disk really
shrinks (docs/storage.md). Reads of what is gone answer 410 `pruned` (node/http/), with
the message `kept_blocks_message` gives.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from marketplace_tx.chain.block import Header
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.primitives import codec
from marketplace_tx.rules.order_records import Order
from marketplace_tx.rules.records import record_from_map
from marketplace_tx.rules.state_keys import order_key
from marketplace_tx.speedups import decode_trusted
from node.indexer import ACCOUNT_TXS, account_history_keys
from node.logging_setup import log_fields
from node.storage import (
    BLOCK,
    BLOCK_EVENTS,
    BLOCK_HASH,
    CHANGE_POINTS,
    COMMIT,
    HEADERS,
    OLDEST_BLOCK_KEY,
    RECEIPTS,
    TX_INDEX,
    ChainStore,
)

log = logging.getLogger("marketchain.pruning")

BATCH_BLOCKS = 256
"""Most blocks one pruning batch deletes."""
BATCH_KEYS = 50_000
"""Most keys one pruning batch deletes (a batch always takes at least one whole block)."""
COMPACT_AFTER_KEYS = 200_000
"""Deleted keys after which the pruned key ranges are compacted (LevelDB `compact_range`)."""


def _height_key(prefix: bytes, height: int) -> bytes:
    return prefix + struct.pack(">Q", height)


# --- what the node keeps, for 410 `pruned` answers ----------------------------------------


def kept_blocks_message(store: ChainStore) -> str:
    """What this node keeps, in words, for the message of a 410 `pruned` answer (R40):
    "this node keeps blocks 1200 … 5000; older ones are pruned", or on a state-synced
    node "… state-synced from height H …"."""
    head = store.head()
    head_height = 0 if head is None else head.height
    oldest = store.oldest_block_height()
    base = store.state_base()
    kept = f"this node keeps blocks {oldest} … {head_height}" if oldest <= head_height else "this node keeps no block yet"
    if base is not None and oldest == base + 1:
        return f"{kept}; it was state-synced from height {base} and never had older ones"
    return f"{kept}; older ones are pruned"


def is_pruned_height(store: ChainStore, height: int) -> bool:
    """Whether block `height` (≥ 1) is below the oldest block this node keeps (R40)."""
    return 1 <= height < store.oldest_block_height()


def history_is_partial(store: ChainStore) -> bool:
    """Whether this node lacks some blocks from 1 on (pruned or state-synced): a transaction
    it cannot find may be in one of them."""
    return store.oldest_block_height() > 1


# --- the pruner -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTransaction:
    """What pruning reads of a stored transaction: enough to find the keys it wrote."""

    hash: bytes
    """SHA-256 of its bytes (R9): its `T` key."""
    sender: bytes
    """Its sender: an account-history row."""
    payload: dict[str, Any]
    """Its payload: the accounts it names (node/indexer.py `participants`)."""

    @classmethod
    def of(cls, raw: bytes) -> StoredTransaction:
        """Read transaction bytes this node stored in a block (already checked when final)."""
        body = decode_trusted(raw)
        return cls(hashlib.sha256(raw).digest(), body["sender"], body["payload"])


@dataclass
class _Batch:
    """The deletions of one batch."""

    deletes: list[bytes] = field(default_factory=list)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    """Dh keys to write: headers of pruned change points."""
    first: int = 0
    last: int = 0


class Pruner:
    """Deletes old blocks in the background (R40); see the module docstring."""

    def __init__(
        self,
        store: ChainStore,
        keep_blocks: int,
        floor: Callable[[], int | None],
        registry: CollectorRegistry | None = None,
        batch_blocks: int = BATCH_BLOCKS,
        batch_keys: int = BATCH_KEYS,
        compact_after_keys: int = COMPACT_AFTER_KEYS,
        between_batches: Callable[[int], None] | None = None,
    ) -> None:
        """Prune `store` to its last `keep_blocks` blocks (0: an archive node, nothing is
        pruned), never at or above `floor()` (None: no floor). `between_batches(oldest)` is
        called after each batch is written (tests use it to stop at a batch boundary)."""
        if keep_blocks < 0 or batch_blocks < 1 or batch_keys < 1:
            raise ValueError("keep_blocks must be ≥ 0 and the batch bounds ≥ 1")
        self.store = store
        """The chain database."""
        self.keep_blocks = keep_blocks
        """How many of the latest blocks are kept (0: all)."""
        self.floor = floor
        """The oldest snapshot height served: blocks from it on are kept."""
        self.batch_blocks = batch_blocks
        """Most blocks per batch."""
        self.batch_keys = batch_keys
        """Most deleted keys per batch."""
        self.compact_after_keys = compact_after_keys
        """Deleted keys between two compactions."""
        self.between_batches = between_batches
        """Test hook called with the new oldest block height after every batch."""
        self.batches_written = 0
        """Batches written since this pruner was made."""
        self.largest_batch_keys = 0
        """The most keys one batch deleted (for tests of the bound)."""
        self._deleted_since_compaction = 0
        self._compact_from: int | None = None
        self._pruned_since_full_compaction = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        registry = registry if registry is not None else CollectorRegistry()
        self.pruned_blocks = Counter(
            "marketchain_pruned_blocks", "Blocks deleted by pruning (R40, [storage] keep_blocks).", registry=registry
        )
        """Counter of pruned blocks."""
        self.oldest_block = Gauge(
            "marketchain_oldest_block_height", "The oldest block height this node keeps (R40).", registry=registry
        )
        """Gauge of the oldest kept block height, read from the store at each scrape (also
        right after a state sync on an archive node, which never prunes)."""
        self.oldest_block.set_function(store.oldest_block_height)

    # --- the background job ------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread and prune what is already due (no-op for an archive node)."""
        if self.keep_blocks == 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="pruner", daemon=True)
        self._thread.start()
        self._wake.set()

    def after_block(self, height: int) -> None:
        """A block was stored at `height`: wake the background job (returns at once)."""
        if self.keep_blocks:
            self._wake.set()

    def stop(self) -> None:
        """Stop the background job at the next batch boundary and wait for it."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.prune()
            except Exception:  # pruning must never stop the node; retried after the next block
                log.exception("pruning failed", extra=log_fields(event="pruning_failed"))

    # --- one pass --------------------------------------------------------------------------

    def prune_below(self) -> int:
        """The lowest height to keep now: min(head − keep_blocks + 1, floor()), never above
        the head; 1 (nothing to prune) on an archive node, during a restore or at genesis."""
        head = self.store.head()
        if self.keep_blocks == 0 or head is None or head.height == 0 or self.store.restoring:
            return 1
        target = head.height - self.keep_blocks + 1
        floor = self.floor()
        if floor is not None:
            target = min(target, floor)
        return max(1, min(target, head.height))

    def prune(self) -> int:
        """Prune everything due now, batch by batch; returns how many blocks were pruned."""
        with self._lock:
            pruned = 0
            target = self.prune_below()
            oldest = self.store.oldest_block_height()
            while oldest < target and not self._stopping.is_set():
                batch = self._collect(oldest, target)
                self._write(batch)
                pruned += batch.last - batch.first + 1
                oldest = batch.last + 1
                if self.between_batches is not None:
                    self.between_batches(oldest)
            if self._deleted_since_compaction >= self.compact_after_keys:
                self.compact()
            return pruned

    def _collect(self, first: int, target: int) -> _Batch:
        """The deletions of blocks first, first+1, … < target within the batch bounds."""
        batch = _Batch(first=first, last=first - 1)
        for height in range(first, min(target, first + self.batch_blocks)):
            deletes, header = self._block_deletions(height)
            if batch.deletes and len(batch.deletes) + len(deletes) > self.batch_keys:
                break
            batch.deletes.extend(deletes)
            if header is not None:
                batch.headers[_height_key(HEADERS, height)] = header
            batch.last = height
        return batch

    def _block_deletions(self, height: int) -> tuple[list[bytes], bytes | None]:
        """The keys block `height` wrote that pruning deletes, and the canonical header to
        keep under `Dh` if it is a change point (R37, R40)."""
        db = self.store.db
        deletes = [_height_key(BLOCK, height), _height_key(RECEIPTS, height), _height_key(BLOCK_EVENTS, height)]
        change_point = db.get(_height_key(CHANGE_POINTS, height)) is not None
        if not change_point:
            deletes.append(_height_key(COMMIT, height))
        raw = db.get(_height_key(BLOCK, height))
        if raw is None:  # never stored here (cannot happen above the state base): nothing else to find
            return deletes, None
        block = decode_trusted(raw)  # bytes this node wrote itself (speedups.decode_trusted)
        header = Header.from_map(block["header"])
        deletes.append(BLOCK_HASH + header.hash)
        raw_receipts = db.get(_height_key(RECEIPTS, height))
        receipts = [] if raw_receipts is None else [Receipt.from_map(item) for item in decode_trusted(raw_receipts)]
        for index, raw_tx in enumerate(block["txs"]):
            tx = StoredTransaction.of(raw_tx)
            deletes.append(TX_INDEX + tx.hash)
            if index < len(receipts):
                deletes.extend(account_history_keys(tx, receipts[index], self._order(tx.payload), height, index))
        return deletes, codec.encode(header.to_map()) if change_point else None

    def _order(self, payload: dict[str, Any]) -> Order | None:
        """The order a transaction acts on, as stored now: its buyer and merchant never change,
        so they name the same accounts the block's account-history rows were written for."""
        order_id = payload.get("order_id")
        if not isinstance(order_id, bytes):
            return None
        raw = self.store.get(order_key(order_id))
        return None if raw is None else record_from_map(Order, codec.decode(raw))

    def _write(self, batch: _Batch) -> None:
        """One atomic, synced batch: the deletions, the kept headers and the new oldest block."""
        with self.store.db.write_batch(sync=True, transaction=True) as write:
            for key in batch.deletes:
                write.delete(key)
            for key, header in batch.headers.items():
                write.put(key, header)
            write.put(OLDEST_BLOCK_KEY, struct.pack(">Q", batch.last + 1))
        self.batches_written += 1
        self.largest_batch_keys = max(self.largest_batch_keys, len(batch.deletes))
        self._deleted_since_compaction += len(batch.deletes)
        self._pruned_since_full_compaction += batch.last - batch.first + 1
        if self._compact_from is None:
            self._compact_from = batch.first
        blocks = batch.last - batch.first + 1
        self.pruned_blocks.inc(blocks)
        log.debug("pruned blocks %d … %d", batch.first, batch.last,
                  extra=log_fields(event="blocks_pruned", first=batch.first, last=batch.last, keys=len(batch.deletes)))

    def compact(self) -> None:
        """Compact the key ranges pruning deleted from, so that their disk space is freed.

        The height-keyed ranges (`B`, `C`, `R`, `E`) from the first height pruned since the
        last compaction: only deleted data is rewritten. The hash-keyed indexes (`K`, `T`)
        and the account histories (`A`) spread their deleted keys among the kept ones, so
        they are compacted whole, and only once at least `keep_blocks` blocks were pruned
        since they last were: the kept data rewritten is then no more than the deleted data
        dropped (amortized, each deleted key costs O(1) rewriting)."""
        db = self.store.db
        first = 1 if self._compact_from is None else self._compact_from
        stop = self.store.oldest_block_height()
        for prefix in (BLOCK, COMMIT, RECEIPTS, BLOCK_EVENTS):
            db.compact_range(start=_height_key(prefix, first), stop=_height_key(prefix, stop))
        self._deleted_since_compaction = 0
        self._compact_from = None
        if self._pruned_since_full_compaction >= self.keep_blocks:
            for prefix in (BLOCK_HASH, TX_INDEX, ACCOUNT_TXS):
                db.compact_range(start=prefix, stop=bytes([prefix[0] + 1]))
            self._pruned_since_full_compaction = 0
