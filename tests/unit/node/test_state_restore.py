"""The state-sync restore (node/state_restore.py) over real LevelDB stores (R35, R39, R40).

A market chain is built on a source store (tests/unit/node/state_restore_market.py),
its snapshot at height H is restored into a fresh genesis store as a joining node would,
and the restored store must be the source's at H: every state entry, every tree record,
the head, and the read indexes (shops, listings by word/tag/shop, orders by
buyer/merchant/shop/state, reviews) up to positions, which a restored store numbers by
chunk. Then the source's next real blocks, executed on the restored store, must give the
same state, tree and indexes: the object positions (`I`) let later changes find the
restored index rows. Interruptions are simulated here by an exception at the crash
points (every batch is synced, so the database is what a kill leaves);
tests/integration/test_restore_crash.py kills a real process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import node.indexer as indexer
import node.storage as storage
from marketplace_tx.primitives import codec
from marketplace_tx.rules.order_records import Order
from marketplace_tx.rules.records import record_from_map
from marketplace_tx.rules.snapshot_tree import chunk_position
from marketplace_tx.rules.snapshots import InvalidSnapshot
from marketplace_tx.rules.state_keys import ORDER, SHOP
from marketplace_tx.rules.state_transition import apply_block
from marketplace_tx.rules.state_tree import tree_root
from node.state_history import change_points
from node.state_restore import RESTORE_CHUNK_PREFIX, WIPED_PREFIXES, StateRestore
from node.storage import ChainStore, StorageError
from tests.unit.node import state_restore_market as market
from tests.unit.node.state_restore_market import (
    BUYER,
    CHAIN_ID,
    MERCHANT,
    OTHER_BUYER,
    SNAPSHOT_HEIGHT,
    MarketChain,
    Snapshot,
    make_genesis,
    snapshot_at,
)
from tests.unit.node.test_state_history_keeping import vote_chain

RECORD_INDEXES = b"HOGLYWFUNQXV"
"""The read indexes a restore writes (account histories `A` are not in a snapshot)."""


@pytest.fixture(name="open_store")
def store_opener(tmp_path: Path) -> Iterator[Callable[[str], ChainStore]]:
    """Open ChainStores on tmp_path/NAME; all are closed at teardown."""
    opened: list[ChainStore] = []

    def open_store(name: str) -> ChainStore:
        opened.append(ChainStore(tmp_path / name))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture(name="source")
def source_chain(open_store: Callable[[str], ChainStore]) -> MarketChain:
    """The market at SNAPSHOT_HEIGHT on a store of its own."""
    return market.build_market(open_store("source"))


def joiner(open_store: Callable[[str], ChainStore], name: str = "joiner") -> ChainStore:
    """A fresh node's store: genesis written, as `node start` does before state sync."""
    store = open_store(name)
    store.initialize(make_genesis())
    return store


def restore(store: ChainStore, snapshot: Snapshot, order: list[int] | None = None) -> StateRestore:
    """Begin, write every chunk (in `order`), finish."""
    restorer = StateRestore(store)
    restorer.begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    for index in range(len(snapshot.chunks)) if order is None else order:
        restorer.write_chunk(index, snapshot.tree(index))
    restorer.finish()
    return restorer


def pairs(store: ChainStore, prefix: bytes) -> dict[bytes, bytes]:
    return dict(store.db.iterator(prefix=prefix))


def everything(store: ChainStore) -> dict[bytes, bytes]:
    return dict(store.db.iterator())


def indexes_without_positions(store: ChainStore) -> Counter[tuple[bytes, bytes]]:
    """Every record-index entry with its 12-byte position cut off."""
    return Counter(
        (key[:-indexer.POSITION_BYTES], value)
        for key, value in store.db.iterator() if key[:1] in RECORD_INDEXES
    )


def check_positions(store: ChainStore) -> None:
    """Every index entry of an object sits at the object's recorded position (`I`)."""
    recorded = {key[1:]: value for key, value in store.db.iterator(prefix=indexer.OBJECT_POSITIONS)}
    for key, value in store.db.iterator():
        family, position = key[:1], key[-indexer.POSITION_BYTES:]
        if family in b"HO":
            assert recorded[value] == position
        elif family in b"GLYW" or family in b"FUNQX":
            assert recorded[value[:32]] == position
        elif family == b"V":
            order = record_from_map(Order, codec.decode(store.get(ORDER + value)))
            assert recorded[order.review["tx"]] == position


def check_same_as_source(restored: ChainStore, source: ChainStore) -> None:
    assert pairs(restored, storage.STATE) == pairs(source, storage.STATE)
    assert pairs(restored, storage.TREE) == pairs(source, storage.TREE)
    assert indexes_without_positions(restored) == indexes_without_positions(source)
    assert pairs(restored, indexer.OBJECT_POSITIONS).keys() == pairs(source, indexer.OBJECT_POSITIONS).keys()
    check_positions(restored)


def ids_under(store: ChainStore, prefix: bytes) -> set[bytes]:
    return {value[:32] for _, value in store.db.iterator(prefix=prefix)}


@pytest.mark.parametrize("depth", [0, 2, 5, 8])
def test_a_restored_store_is_the_source_at_the_snapshot_and_follows_its_next_blocks(
    source: MarketChain, open_store: Callable[[str], ChainStore], depth: int
) -> None:
    snapshot = snapshot_at(source, depth)
    source_tip = source.store.head()
    store = joiner(open_store)
    restore(store, snapshot, order=list(reversed(range(len(snapshot.chunks)))))
    assert store.head() == source_tip and store.state_base() == SNAPSHOT_HEIGHT
    assert store.oldest_block_height() == SNAPSHOT_HEIGHT + 1
    assert tree_root(store) == source_tip.state_root and not store.restoring
    assert store.header(SNAPSHOT_HEIGHT) == source.store.header(SNAPSHOT_HEIGHT)
    assert store.commit(SNAPSHOT_HEIGHT) == source.store.commit(SNAPSHOT_HEIGHT)
    assert not pairs(store, RESTORE_CHUNK_PREFIX) and store.db.get(storage.RESTORE_KEY) is None
    check_same_as_source(store, source.store)
    shop, roastery = source.ids["tea_house"], source.ids["roastery"]
    assert ids_under(store, indexer.SHOPS) == {shop, roastery}
    assert ids_under(store, indexer.word_prefix("yunnan")) == {source.ids["tea"]}
    assert ids_under(store, indexer.tag_prefix("organic")) == {source.ids["tea"], source.ids["coffee"]}
    assert ids_under(store, indexer.LISTINGS_BY_SHOP + roastery) == {source.ids["coffee"], source.ids["old_stock"]}
    buyer_orders = {"tea_order", "pot_order", "rejected_order", "points_order"}
    assert ids_under(store, indexer.ORDERS_BY_BUYER + BUYER.address) == {source.ids[n] for n in buyer_orders}
    assert ids_under(store, indexer.ORDERS_BY_MERCHANT + MERCHANT.address) == {
        source.ids[n] for n in ("tea_order", "pot_order", "waiting_order", "cancelled_order", "points_order")
    }
    assert ids_under(store, indexer.state_prefix("placed")) == {source.ids["waiting_order"], source.ids["points_order"]}
    assert ids_under(store, indexer.state_prefix("completed")) == {source.ids["tea_order"], source.ids["pot_order"]}
    assert {value for _, value in store.db.iterator(prefix=indexer.REVIEWS_BY_SHOP + shop)} == {
        source.ids["tea_order"], source.ids["pot_order"]
    }
    assert store.get(b"i" + b"TEA-POT:001") == source.store.get(b"i" + b"TEA-POT:001") is not None

    market.play_later(source)
    for result, commit in zip(source.results[SNAPSHOT_HEIGHT:], source.commits[SNAPSHOT_HEIGHT:], strict=True):
        tip = store.head()
        assert tip is not None
        executed = apply_block(store, tip, CHAIN_ID, source.genesis.params, result.block)
        store.commit_block(executed, commit)
    assert store.head() == source.store.head()
    check_same_as_source(store, source.store)
    assert source.ids["waiting_order"] not in ids_under(store, indexer.state_prefix("placed"))
    assert source.ids["waiting_order"] in ids_under(store, indexer.state_prefix("accepted"))
    assert ids_under(store, indexer.word_prefix("green")) == set()
    assert ids_under(store, indexer.word_prefix("black")) == {source.ids["tea"]}
    later = indexer.encode_position(SNAPSHOT_HEIGHT + 1, 0)
    for account in (BUYER, OTHER_BUYER, MERCHANT):
        prefix = indexer.ACCOUNT_TXS + account.address
        source_later = {k: v for k, v in pairs(source.store, prefix).items() if k[-12:] >= later}
        assert pairs(store, prefix) == source_later and source_later


def test_a_restored_store_reopens_with_its_tree_checked(
    source: MarketChain, open_store: Callable[[str], ChainStore]
) -> None:
    store = joiner(open_store)
    restore(store, snapshot_at(source, 3))
    contents = everything(store)
    store.close()
    reopened = open_store("joiner")
    assert reopened.initialize(make_genesis()) == source.store.head()  # the tree check passes
    assert everything(reopened) == contents


def test_chunks_in_any_order_and_written_twice_give_the_same_store(
    source: MarketChain, open_store: Callable[[str], ChainStore]
) -> None:
    snapshot = snapshot_at(source, 3)
    straight = joiner(open_store, "straight")
    restore(straight, snapshot)
    twice = joiner(open_store, "twice")
    restore(twice, snapshot, order=[5, 2, 7, 5, 0, 1, 2, 3, 4, 6, 7, 0])
    assert everything(twice) == everything(straight)


def test_a_chunk_of_another_manifest_is_refused(source: MarketChain, open_store: Callable[[str], ChainStore]) -> None:
    snapshot = snapshot_at(source, 2)
    market.play_later(source)
    other = snapshot_at(source, 2)
    store = joiner(open_store)
    restorer = StateRestore(store)
    restorer.begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    changed = next(i for i in range(4) if other.manifest.chunks[i] != snapshot.manifest.chunks[i])
    with pytest.raises(InvalidSnapshot, match="not the manifest's"):
        restorer.write_chunk(changed, other.tree(changed))
    assert restorer.pending().done == frozenset()
    for index in range(4):
        restorer.write_chunk(index, snapshot.tree(index))
    # a record that is not the manifest's (disk damage, a bug) is caught by the root check
    foreign = other.tree(changed).root_record
    assert foreign is not None
    store.db.put(storage.TREE + chunk_position(2, changed), foreign)
    with pytest.raises(StorageError, match="is not the snapshot's state_root"):
        restorer.finish()
    assert store.restoring and store.head().height == 0


def test_finish_refuses_while_chunks_are_missing(source: MarketChain, open_store: Callable[[str], ChainStore]) -> None:
    snapshot = snapshot_at(source, 2)
    store = joiner(open_store)
    restorer = StateRestore(store)
    restorer.begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    restorer.write_chunk(1, snapshot.tree(1))
    with pytest.raises(StorageError, match="3 of 4 chunks are not written yet"):
        restorer.finish()
    assert store.restoring and store.head().height == 0


def test_begin_needs_a_genesis_store_and_a_consistent_snapshot(
    source: MarketChain, open_store: Callable[[str], ChainStore]
) -> None:
    snapshot = snapshot_at(source, 1)
    with pytest.raises(StorageError, match="already holds blocks up to 12"):
        StateRestore(source.store).begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    with pytest.raises(StorageError, match="initialize the store"):
        StateRestore(open_store("empty")).begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    store = joiner(open_store)
    older = codec.encode(source.results[3].block.header.to_map())
    with pytest.raises(ValueError, match="not the manifest's height"):
        StateRestore(store).begin(snapshot.manifest, older, snapshot.commit, ())
    with pytest.raises(ValueError, match="does not finalize the header"):
        StateRestore(store).begin(snapshot.manifest, snapshot.header, source.commits[3].encode(), ())
    assert not store.restoring and store.head().height == 0


class Interrupted(Exception):
    """Raised at a crash point instead of a SIGKILL."""


class InterruptedRestore(StateRestore):
    """Stops (by exception) at its crash point: what the database then holds is what a kill leaves."""

    def _crash(self, point: str) -> None:
        if self.crash_at == point:
            raise Interrupted(point)


def test_the_wipe_runs_in_bounded_batches_and_a_stop_in_it_leaves_a_restoring_store(
    source: MarketChain, open_store: Callable[[str], ChainStore]
) -> None:
    snapshot = snapshot_at(source, 3)
    store = joiner(open_store)
    genesis_keys = len(pairs(store, storage.STATE)) + len(pairs(store, storage.TREE))
    assert genesis_keys > 5
    with pytest.raises(Interrupted):
        InterruptedRestore(store, "wipe", wipe_batch_keys=5).begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    left = sum(len(pairs(store, prefix)) for prefix in WIPED_PREFIXES)
    assert left == genesis_keys - 5  # one batch of 5 deletions, synced, then the stop
    progress = StateRestore(store).pending()
    assert progress is not None and not progress.wiped and progress.done == frozenset()
    assert progress.manifest == snapshot.manifest and progress.header == snapshot.header
    resumed = StateRestore(store)
    for index in range(8):
        resumed.write_chunk(index, snapshot.tree(index))  # the first write finishes the wipe
    resumed.finish()
    straight = joiner(open_store, "straight")
    restore(straight, snapshot)
    assert everything(store) == everything(straight)


def test_beginning_again_replaces_a_partial_restore_and_forgets_its_done_marks(
    source: MarketChain, open_store: Callable[[str], ChainStore]
) -> None:
    first = snapshot_at(source, 3)
    store = joiner(open_store)
    restorer = StateRestore(store)
    restorer.begin(first.manifest, first.header, first.commit, ())
    for index in (0, 4, 6):
        restorer.write_chunk(index, first.tree(index))
    assert StateRestore(store).pending().done == {0, 4, 6}
    second = snapshot_at(source, 2)
    with pytest.raises(Interrupted):
        InterruptedRestore(store, "begin").begin(second.manifest, second.header, second.commit, ())
    progress = StateRestore(store).pending()
    assert progress.manifest == second.manifest and progress.done == frozenset() and not progress.wiped
    restore(store, second)
    straight = joiner(open_store, "straight")
    restore(straight, second)
    assert everything(store) == everything(straight)


@pytest.mark.parametrize("written", [0, 3, 8])
def test_abandon_gives_back_the_genesis_store(
    source: MarketChain, open_store: Callable[[str], ChainStore], written: int
) -> None:
    snapshot = snapshot_at(source, 3)
    fresh = everything(joiner(open_store, "fresh"))
    store = joiner(open_store)
    restorer = StateRestore(store)
    restorer.begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    for index in range(written):
        restorer.write_chunk(index, snapshot.tree(index))
    StateRestore(store).abandon(make_genesis())
    assert everything(store) == fresh and not store.restoring
    assert tree_root(store) == store.head().state_root
    with pytest.raises(StorageError, match="no state-sync restore is under way"):
        StateRestore(store).abandon(make_genesis())


def test_a_restore_abandoned_or_finished_elsewhere_is_not_written_to(
    source: MarketChain, open_store: Callable[[str], ChainStore]
) -> None:
    snapshot = snapshot_at(source, 2)
    store = joiner(open_store)
    first = StateRestore(store)
    first.begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    first.write_chunk(0, snapshot.tree(0))
    StateRestore(store).abandon(make_genesis())  # e.g. the node gave up through another object
    genesis_store = everything(store)
    with pytest.raises(StorageError, match="no state-sync restore is under way"):
        first.write_chunk(1, snapshot.tree(1))
    with pytest.raises(StorageError, match="no state-sync restore is under way"):
        first.finish()
    assert everything(store) == genesis_store


def test_an_interrupted_abandon_is_still_restoring_and_counts_no_chunk(
    source: MarketChain, open_store: Callable[[str], ChainStore]
) -> None:
    snapshot = snapshot_at(source, 3)
    store = joiner(open_store)
    restorer = StateRestore(store)
    restorer.begin(snapshot.manifest, snapshot.header, snapshot.commit, ())
    for index in range(8):
        restorer.write_chunk(index, snapshot.tree(index))
    with pytest.raises(Interrupted):
        InterruptedRestore(store, "wipe", wipe_batch_keys=3).abandon(make_genesis())
    progress = StateRestore(store).pending()
    assert store.restoring and progress is not None and progress.done == frozenset() and not progress.wiped
    StateRestore(store).abandon(make_genesis())
    assert everything(store) == everything(joiner(open_store, "fresh"))


def test_change_points_below_and_at_the_snapshot_height_are_kept(open_store: Callable[[str], ChainStore]) -> None:
    chain = vote_chain(open_store("source"))
    points, _ = change_points(chain.store, 0, 100)
    height = points[2].height  # the snapshot height is itself a change point: J from the restored `v`
    header = chain.results[height - 1].block.header
    snapshot = market.snapshot_from(chain.states[height].items(), header, chain.commits[height - 1], 2)
    store = open_store("joiner")
    store.initialize(chain.genesis)
    restorer = StateRestore(store)
    restorer.begin(snapshot.manifest, snapshot.header, snapshot.commit, [p for p in points if p.height < height])
    for index in range(4):
        restorer.write_chunk(index, snapshot.tree(index))
    assert restorer.finish() == chain.tips[height]
    assert change_points(store, 0, 100)[0] == [point for point in points if point.height <= height]
    for point in points[:3]:
        assert store.header(point.height) == chain.results[point.height - 1].block.header
        assert store.commit(point.height) == chain.commits[point.height - 1]


def test_a_chunk_of_more_objects_than_its_positions_can_number_is_refused(
    source: MarketChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = source.store.get(SHOP + source.ids["roastery"])
    assert raw is not None
    few = indexer.restored_index_writes(5, [(SHOP + bytes([n]) * 32, raw) for n in (1, 2, 3)])
    positions = sorted(v for k, v in few.puts.items() if k[:1] == indexer.OBJECT_POSITIONS)
    assert positions == [indexer.encode_position(2, 5 << 16 | n) for n in range(3)]  # the roastery was created at 2
    assert indexer.MAX_RESTORED_ORDINAL == 0xFFFF  # chunk << 16 | ordinal: chunks never share a position
    monkeypatch.setattr(indexer, "MAX_RESTORED_ORDINAL", 2)
    with pytest.raises(ValueError, match="over 3 shops, listings, orders and reviews"):
        indexer.restored_index_writes(0, [(SHOP + bytes([n]) * 32, raw) for n in range(4)])


def test_the_wipe_covers_every_read_index() -> None:
    # index families are upper-case letters, the state's (imported by the indexer) lower-case (R35)
    families = {value for value in vars(indexer).values() if isinstance(value, bytes) and value.isupper()}
    assert families and families <= set(WIPED_PREFIXES)
    assert {storage.STATE, storage.TREE} <= set(WIPED_PREFIXES)


def test_crash_points_come_from_the_fault_plan_and_a_misspelt_one_is_refused(
    open_store: Callable[[str], ChainStore]
) -> None:
    from node.fault_plan import RESTORE_CRASH_VARIABLE, FaultPlan

    assert FaultPlan.from_environment({RESTORE_CRASH_VARIABLE: "chunk:3"}).restore_crash == "chunk:3"
    assert FaultPlan.from_environment({}).restore_crash is None
    store = joiner(open_store)
    for point in ("begin", "wipe", "chunk:0", "chunk:12", "before_finish", "after_finish", None):
        StateRestore(store, point)
    for point in ("chunk", "chunk:x", "finish", "Begin"):
        with pytest.raises(ValueError, match="crash_at must be one of"):
            StateRestore(store, point)
