"""Pruning (R40, node/pruning.py) on a real LevelDB with real blocks: exactly the blocks
below min(head − keep_blocks + 1, floor) go, with every key they wrote (B, K, T, R, E, A,
C except at change points), and nothing else; change points keep header and commit so that
light clients still verify; batches are bounded and a stop between them leaves a store whose
oldest-block key says exactly what exists.
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import node.storage as storage
from consensus.commit import verify_commit
from marketplace_tx.chain.block import Header
from marketplace_tx.primitives import codec
from node.indexer import ACCOUNT_TXS, OBJECT_POSITIONS, decode_position
from node.pruning import Pruner, history_is_partial, is_pruned_height, kept_blocks_message
from node.state_history import change_points
from node.storage import ChainStore
from tests.paths import REPO_ROOT
from tests.unit.node.chain_store_model import ALICE, VALIDATOR
from tests.unit.node.state_history_chain import (
    SECOND_VALIDATOR,
    RandomChain,
    started_chain,
    store_opener,
)
from tests.unit.node.state_restore_market import build_market, play_later

open_store = store_opener
"""ChainStores on the test's tmp_path (a fixture)."""

HEIGHT_PREFIXES = (storage.BLOCK, storage.COMMIT, storage.RECEIPTS, storage.BLOCK_EVENTS, storage.HEADERS)


def long_chain(store: ChainStore, seed: int = 7) -> RandomChain:
    """About 40 blocks of random transactions with two change points (a validator added, then removed)."""
    chain = started_chain(store, seed=seed)
    chain.commit([chain.sign(ALICE, "transfer", {"to": SECOND_VALIDATOR.address, "amount": 10_000})])
    chain.random_blocks(4)
    chain.commit(chain.vote("add", (VALIDATOR,)))
    chain.random_blocks(6)
    chain.commit(chain.vote("remove", (VALIDATOR, SECOND_VALIDATOR)))
    chain.random_blocks(26)
    return chain


def everything(store: ChainStore) -> dict[bytes, bytes]:
    """Every key of the database."""
    return dict(store.db.iterator())


def height_of(key: bytes) -> int:
    return struct.unpack(">Q", key[len(key) - 8:] if key[:2] == storage.HEADERS else key[1:9])[0]


def keys_of_block(chain: RandomChain, height: int) -> set[bytes]:
    """Every key block `height` wrote that pruning must delete (commit aside)."""
    result = chain.results[height - 1]
    packed = struct.pack(">Q", height)
    keys = {storage.BLOCK + packed, storage.RECEIPTS + packed, storage.BLOCK_HASH + result.block.hash}
    keys |= {storage.TX_INDEX + tx.hash for tx in result.transactions}
    return keys


def check_consistent(store: ChainStore, chain: RandomChain) -> int:
    """The oldest-block key says exactly which blocks exist; returns it."""
    oldest = store.oldest_block_height()
    for height in range(1, chain.head.height + 1):
        result = chain.results[height - 1]
        assert (store.block_bytes(height) is not None) == (height >= oldest), height
        assert (store.height_of_block(result.block.hash) is not None) == (height >= oldest), height
        for tx in result.transactions:
            assert (store.tx_location(tx.hash) is not None) == (height >= oldest), height
    for key in store.db.iterator(prefix=ACCOUNT_TXS, include_value=False):
        assert decode_position(key[-12:])[0] >= oldest
    return oldest


def test_exactly_the_blocks_below_the_kept_range_go_with_every_key_they_wrote(
    open_store: Callable[..., ChainStore],
) -> None:
    store = open_store(keep_state=5)
    chain = long_chain(store)
    head = chain.head.height
    points_before = change_points(store, 0, 100)[0]
    point_heights = {point.height for point in points_before}
    assert len(point_heights) == 2
    before = everything(store)
    pruner = Pruner(store, keep_blocks=10, floor=lambda: None)
    assert pruner.prune() == head - 10
    after = everything(store)
    oldest = head - 9
    assert store.oldest_block_height() == oldest and check_consistent(store, chain) == oldest
    expected_gone: set[bytes] = set()
    for height in range(1, oldest):
        expected_gone |= keys_of_block(chain, height)
        if height not in point_heights:
            expected_gone.add(storage.COMMIT + struct.pack(">Q", height))
    expected_gone |= {key for key in before if key[:1] == ACCOUNT_TXS and decode_position(key[-12:])[0] < oldest}
    expected_gone |= {key for key in before if key[:1] == storage.BLOCK_EVENTS and height_of(key) < oldest}
    assert set(before) - set(after) == expected_gone
    added = {key: value for key, value in after.items() if before.get(key) != value}
    headers = {storage.HEADERS + struct.pack(">Q", height): codec.encode(chain.results[height - 1].block.header.to_map())
               for height in point_heights if height < oldest}
    assert added == {**headers, storage.OLDEST_BLOCK_KEY: struct.pack(">Q", oldest)}
    assert all(key[:1] != OBJECT_POSITIONS for key in expected_gone)
    # the kept blocks are whole, the head's commit stays, and the light client's points answer
    for height in range(oldest, head + 1):
        assert store.block(height) is not None and store.commit(height) == chain.commits[height - 1]
    assert change_points(store, 0, 100)[0] == points_before
    for point in points_before:
        header = Header.from_map(codec.decode(point.header))
        assert header == store.header(point.height) == chain.results[point.height - 1].block.header
        signers = [member.address for member in chain.sets[header.validators_hash]]
        verify_commit(point.commit, header.chain_id, header.hash, point.height, signers)
    assert pruner.prune() == 0  # nothing more is due


def test_a_floor_keeps_the_blocks_from_the_oldest_snapshot_on(open_store: Callable[..., ChainStore]) -> None:
    store = open_store(keep_state=3)
    chain = long_chain(store, seed=8)
    pruner = Pruner(store, keep_blocks=5, floor=lambda: 12)
    pruner.prune()
    assert store.oldest_block_height() == 12 and check_consistent(store, chain) == 12
    assert Pruner(store, keep_blocks=0, floor=lambda: None).prune() == 0  # an archive node prunes nothing
    assert store.oldest_block_height() == 12


def test_batches_are_bounded_and_a_stop_between_them_leaves_a_consistent_store(
    open_store: Callable[..., ChainStore],
) -> None:
    store = open_store(keep_state=3)
    chain = long_chain(store, seed=9)
    head = chain.head.height
    seen: list[int] = []

    def stop_after_three(oldest: int) -> None:
        seen.append(oldest)
        assert check_consistent(store, chain) == oldest
        if len(seen) == 3:
            raise RuntimeError("stopped between batches")

    pruner = Pruner(store, keep_blocks=4, floor=lambda: None, batch_blocks=3, batch_keys=40,
                    between_batches=stop_after_three)
    with pytest.raises(RuntimeError):
        pruner.prune()
    assert 0 < pruner.largest_batch_keys <= 40  # no block of this chain writes more than 40 keys
    assert all(0 < later - earlier <= 3 for earlier, later in zip([1, *seen], seen, strict=False))
    assert check_consistent(store, chain) == seen[-1] < head - 3
    resumed = Pruner(store, keep_blocks=4, floor=lambda: None, batch_blocks=3, batch_keys=40)
    resumed.prune()
    assert check_consistent(store, chain) == head - 3
    assert 0 < resumed.largest_batch_keys <= 40 and resumed.batches_written >= (head - 3 - seen[-1]) / 3


def test_the_background_job_follows_the_head_and_stops(open_store: Callable[..., ChainStore]) -> None:
    store = open_store(keep_state=2)
    chain = started_chain(store, seed=10)
    chain.random_blocks(5)
    registry = CollectorRegistry()
    pruner = Pruner(store, keep_blocks=3, floor=lambda: None, registry=registry)
    pruner.start()
    try:
        for _ in range(10):
            chain.commit(chain.random_transactions(3))
            pruner.after_block(chain.head.height)
        deadline = time.monotonic() + 60
        while store.oldest_block_height() != chain.head.height - 2:
            assert time.monotonic() < deadline, "the pruner did not catch up"
            time.sleep(0.02)
    finally:
        pruner.stop()
    assert registry.get_sample_value("marketchain_oldest_block_height") == chain.head.height - 2
    assert registry.get_sample_value("marketchain_pruned_blocks_total") == chain.head.height - 3
    assert check_consistent(store, chain) == chain.head.height - 2


def test_messages_say_what_the_node_keeps(open_store: Callable[..., ChainStore]) -> None:
    store = open_store(keep_state=2)
    chain = started_chain(store, seed=11)
    chain.random_blocks(8)
    assert not history_is_partial(store) and not is_pruned_height(store, 1)
    Pruner(store, keep_blocks=3, floor=lambda: None).prune()
    assert kept_blocks_message(store) == "this node keeps blocks 6 … 8; older ones are pruned"
    assert history_is_partial(store) and is_pruned_height(store, 5) and not is_pruned_height(store, 6)
    store.db.put(storage.STATE_BASE_KEY, struct.pack(">Q", 5))
    assert kept_blocks_message(store) == (
        "this node keeps blocks 6 … 8; it was state-synced from height 5 and never had older ones"
    )


@pytest.mark.parametrize(("where", "after"), [("between", 1), ("between", 4), ("anywhere", 30), ("anywhere", 120)])
def test_a_kill_9_while_pruning_leaves_a_store_that_says_what_it_holds(
    open_store: Callable[..., ChainStore], tmp_path: Path, where: str, after: int,
) -> None:
    """Each batch is one synced atomic LevelDB batch with the oldest-block key: a process
    killed between batches or anywhere inside one leaves every block from the oldest-block
    key on whole and none below; a new pruner finishes the job."""
    store = open_store("killed", keep_state=3)
    chain = long_chain(store, seed=12)
    store.close()
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.node.pruning_kill", str(tmp_path / "killed"), "4", "2", where, str(after)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    reopened = open_store("killed", keep_state=3)
    stopped_at = check_consistent(reopened, chain)
    if where == "between":
        assert 1 < stopped_at < chain.head.height - 3  # killed half-way
    Pruner(reopened, keep_blocks=4, floor=lambda: None).prune()
    assert check_consistent(reopened, chain) == chain.head.height - 3


READ_INDEX_PREFIXES = frozenset(b"HOGLYWFUNQXVI")
"""The marketplace read indexes and object positions (node/indexer.py): never pruned."""


def test_a_pruned_market_keeps_its_read_indexes_and_later_changes_find_old_objects(
    open_store: Callable[..., ChainStore],
) -> None:
    """Shops, listings, orders and reviews created in pruned blocks keep every index entry;
    blocks after pruning that change them (an order accepted, a listing re-titled, a review
    replied to) update the same entries as on an archive node; the account-history rows of
    pruned blocks (orders' buyers and merchants included) are all gone."""
    archive, pruned = open_store("archive"), open_store("pruned")
    archive_chain, pruned_chain = build_market(archive), build_market(pruned)
    Pruner(pruned, keep_blocks=1, floor=lambda: None).prune()
    oldest = pruned.oldest_block_height()
    assert oldest == pruned_chain.results[-1].block.header.height > 2
    play_later(archive_chain)
    play_later(pruned_chain)
    kept, full = everything(pruned), everything(archive)
    assert {key: value for key, value in kept.items() if key[0] in READ_INDEX_PREFIXES} == {
        key: value for key, value in full.items() if key[0] in READ_INDEX_PREFIXES}
    assert {key: value for key, value in kept.items() if key[:1] == storage.STATE} == {
        key: value for key, value in full.items() if key[:1] == storage.STATE}
    history = [key for key in full if key[:1] == ACCOUNT_TXS]
    assert {key for key in kept if key[:1] == ACCOUNT_TXS} == {
        key for key in history if decode_position(key[-12:])[0] >= oldest}
    assert any(decode_position(key[-12:])[0] < oldest for key in history)
