"""ChainStore refuses blocks that do not extend its head, and a failure inside a write
batch leaves the database untouched (node/storage.py: one atomic, synced batch per block).
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import node.storage as storage
from marketplace_tx.rules.state_transition import (
    BlockResult,
    ChainTip,
    genesis_changes,
)
from node.storage import ChainStore, StorageError
from tests.unit.node.chain_store_model import (
    ALICE,
    BOB,
    NEWCOMER,
    USERS,
    committed_store,
    everything,
    make_genesis,
    next_block,
    store_opener,
)


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., ChainStore]]:
    """Open ChainStores (default: tmp_path/db); all are closed at teardown."""
    yield from store_opener(tmp_path)


# --------------------------------------------------------------------------- refusing blocks




def test_commit_block_refuses_a_block_that_does_not_follow_the_head(
    open_store: Callable[..., ChainStore],
) -> None:
    store, genesis, chain = committed_store(open_store)
    head = chain.tips[-1]
    before = everything(store)
    # the head block again, and an older block
    for height in (head.height, 1):
        with pytest.raises(StorageError, match="does not follow the head"):
            store.commit_block(chain.results[height - 1], chain.commits[height - 1])
    # a block two above the head: build it over a pretend tip at head + 1
    skipped = ChainTip(head.height + 1, hashlib.sha256(b"missing").digest(), head.time + 1, head.state_root)
    result, commit = next_block(store, genesis, skipped, chain.commits[-1], [chain.wallet.transfer(ALICE, BOB, 5)])
    assert result.block.header.height == head.height + 2
    with pytest.raises(StorageError, match="does not follow the head"):
        store.commit_block(result, commit)
    assert store.head() == head
    assert everything(store) == before


def test_commit_block_on_an_uninitialized_store_is_refused(open_store: Callable[..., ChainStore]) -> None:
    _, genesis, chain = committed_store(open_store)
    empty = open_store("empty")
    with pytest.raises(StorageError, match="does not follow the head"):
        empty.commit_block(chain.results[0], chain.commits[0])
    assert everything(empty) == {}


def test_commit_block_refuses_a_block_on_another_parent(open_store: Callable[..., ChainStore]) -> None:
    store, genesis, chain = committed_store(open_store)
    head = chain.tips[-1]
    before = everything(store)
    # the right height, but the child of a different block than the stored head
    sibling = ChainTip(head.height, hashlib.sha256(b"another block").digest(), head.time, head.state_root)
    result, commit = next_block(store, genesis, sibling, chain.commits[-1], [chain.wallet.transfer(ALICE, BOB, 5)])
    assert result.block.header.height == head.height + 1
    assert result.block.header.prev_hash != head.block_hash
    with pytest.raises(StorageError):
        store.commit_block(result, commit)
    assert everything(store) == before


def test_commit_block_refuses_a_commit_for_another_block(open_store: Callable[..., ChainStore]) -> None:
    store, genesis, chain = committed_store(open_store)
    head = chain.tips[-1]
    before = everything(store)
    result, commit = next_block(store, genesis, head, chain.commits[-1], [chain.wallet.transfer(ALICE, BOB, 5)])
    wrong_hash = dataclasses.replace(commit, block_hash=hashlib.sha256(b"elsewhere").digest())
    wrong_height = dataclasses.replace(commit, height=commit.height + 1)
    for bad in (wrong_hash, wrong_height):
        with pytest.raises(StorageError, match="commit"):
            store.commit_block(result, bad)
        assert everything(store) == before
    store.commit_block(result, commit)
    assert store.head().height == head.height + 1


# --------------------------------------------------------------------------- atomicity of the batch


class CountingBatch:
    """A real plyvel write batch that counts what was put into it before it is written."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.puts = 0
        self.deletes = 0

    def __enter__(self) -> CountingBatch:
        self.batch.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        return self.batch.__exit__(*exc_info)

    def put(self, key: bytes, value: bytes) -> None:
        self.batch.put(key, value)
        self.puts += 1

    def delete(self, key: bytes) -> None:
        self.batch.delete(key)
        self.deletes += 1


class RecordingDB:
    """The real plyvel database, with the batches it hands out recorded (nothing else changes)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.batches: list[tuple[dict[str, Any], CountingBatch]] = []

    def write_batch(self, **options: Any) -> CountingBatch:
        batch = CountingBatch(self._db.write_batch(**options))
        self.batches.append((options, batch))
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _fail_at_head(monkeypatch: pytest.MonkeyPatch, result: BlockResult) -> BlockResult:
    """Raise after every put of the block, when the head pointer is encoded."""

    def broken_encode_tip(tip: ChainTip) -> bytes:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(storage, "_encode_tip", broken_encode_tip)
    return result


def _fail_in_state_changes(monkeypatch: pytest.MonkeyPatch, result: BlockResult) -> BlockResult:
    """A state value LevelDB refuses, in the middle of the state changes."""
    items = list(result.changes.items())
    middle = len(items) // 2
    broken: dict[bytes, Any] = dict(items[:middle])
    broken[b"\x00not-a-real-key"] = "text is not bytes"
    broken.update(items[middle:])
    return dataclasses.replace(result, changes=broken)


@pytest.mark.parametrize("inject", [_fail_at_head, _fail_in_state_changes], ids=["at-head", "mid-state"])
def test_a_failure_inside_the_batch_writes_nothing(
    open_store: Callable[..., ChainStore],
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch, BlockResult], BlockResult],
) -> None:
    store, genesis, chain = committed_store(open_store)
    head = chain.tips[-1]
    txs = [chain.wallet.transfer(user, NEWCOMER, 3) for user in USERS]
    result, commit = next_block(store, genesis, head, chain.commits[-1], txs)
    before = everything(store)

    real_db = store.db
    recording = RecordingDB(real_db)
    monkeypatch.setattr(store, "db", recording)
    with monkeypatch.context() as patch:
        broken = inject(patch, result)
        with pytest.raises((RuntimeError, TypeError)):
            store.commit_block(broken, commit)
    [(options, batch)] = recording.batches
    assert options.get("transaction") is True and options.get("sync") is True
    assert batch.puts >= 4 + len(txs), "the failure did not happen after the block's puts"

    # the real LevelDB batch was discarded: not one key changed, and the store still works
    assert store.head() == head
    assert everything(store) == before
    assert store.block(head.height + 1) is None
    assert all(store.tx_location(tx.hash) is None for tx in txs)
    monkeypatch.setattr(store, "db", real_db)
    assert store.commit_block(result, commit).height == head.height + 1
    assert store.block_bytes(head.height + 1) == result.block.encode()
    assert store.db.get(storage.RECEIPTS + struct.pack(">Q", head.height + 1)) is not None


def test_a_failure_inside_initialize_writes_nothing(
    open_store: Callable[..., ChainStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    genesis = make_genesis()
    store = open_store()

    def broken_encode_tip(tip: ChainTip) -> bytes:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patch:
        patch.setattr(storage, "_encode_tip", broken_encode_tip)
        with pytest.raises(RuntimeError):
            store.initialize(genesis)
    assert everything(store) == {}
    assert store.initialize(genesis) == genesis_changes(genesis)[0]
