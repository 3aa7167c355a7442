"""What the store keeps for state proofs and light clients (R37, R40): undo records for
exactly `keep_state` heights, the change points of the validator set forever, all of it
across a reopen; and what it refuses to open (a v1 database, a tree that disagrees with
the head).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import node.state_history as state_history
import node.storage as storage
from consensus.commit import verify_commit
from marketplace_tx.chain.block import Header
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import verify_state_proof
from marketplace_tx.rules.state_keys import account_key
from marketplace_tx.rules.validators import validators_hash
from node.config import ConfigError, NodeConfig, apply_environment
from node.state_history import ProofUnavailable, change_points, oldest_provable_height, prove_state
from node.storage import ChainStore, StorageError
from tests.unit.node.chain_store_model import ALICE, CHAIN_ID, VALIDATOR, make_genesis
from tests.unit.node.state_history_chain import (
    SECOND_VALIDATOR,
    RandomChain,
    started_chain,
    store_opener,
)

open_store = store_opener
"""ChainStores on the test's tmp_path (a fixture)."""


def undo_heights(store: ChainStore) -> list[int]:
    """The heights whose undo record is stored, ascending."""
    return [int.from_bytes(key[len(storage.UNDO):], "big") for key in store.db.iterator(prefix=storage.UNDO, include_value=False)]


def check_account_proof(store: ChainStore, chain: RandomChain, height: int) -> None:
    key = account_key(ALICE.address)
    proof, state_root = prove_state(store, key, height)
    verify_state_proof(proof, key, height, chain.tips[height].state_root)
    assert state_root == chain.tips[height].state_root and proof.value == chain.states[height].get(key)


# --------------------------------------------------------------------------- keep_state


@pytest.mark.parametrize("keep_state", [1, 2, 3, 7])
def test_exactly_the_undo_records_of_the_kept_heights_remain(
    open_store: Callable[..., ChainStore], keep_state: int
) -> None:
    """A proof at H needs the records of H+1 … head: with keep_state K the oldest kept
    height is head−K+1, so exactly the records head−K+2 … head stay, and disk grows with
    the state, not with history."""
    store = open_store(keep_state=keep_state)
    chain = started_chain(store, seed=10 + keep_state)
    for _ in range(12):
        chain.random_blocks(1)
        head = chain.head.height
        oldest = max(0, head - keep_state + 1)
        assert undo_heights(store) == list(range(max(1, oldest + 1), head + 1))
        assert oldest_provable_height(store) == oldest
        check_account_proof(store, chain, oldest)
        if oldest > 0:
            with pytest.raises(ProofUnavailable) as caught:
                prove_state(store, account_key(ALICE.address), oldest - 1)
            assert caught.value.code == "pruned"


def test_keep_state_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_state"):
        ChainStore(tmp_path / "db", keep_state=0)
    assert NodeConfig().storage.keep_state == 1000
    assert apply_environment(NodeConfig(), {"MARKETCHAIN_STORAGE_KEEP_STATE": "7"}).storage.keep_state == 7
    with pytest.raises(ConfigError, match="at least 1"):
        apply_environment(NodeConfig(), {"MARKETCHAIN_STORAGE_KEEP_STATE": "0"})


def test_lowering_keep_state_prunes_at_open_and_raising_it_waits_for_history(
    open_store: Callable[..., ChainStore],
) -> None:
    store = open_store("db", keep_state=10)
    chain = started_chain(store, seed=20)
    chain.random_blocks(15)
    assert undo_heights(store) == list(range(7, 16)) and oldest_provable_height(store) == 6
    store.close()

    lowered = open_store("db", keep_state=4)
    lowered.initialize(make_genesis())
    assert undo_heights(lowered) == [13, 14, 15] and oldest_provable_height(lowered) == 12
    chain.store = lowered
    check_account_proof(lowered, chain, 12)
    lowered.close()

    raised = open_store("db", keep_state=100)
    raised.initialize(make_genesis())
    assert oldest_provable_height(raised) == 12  # the older records are gone for good
    with pytest.raises(ProofUnavailable) as caught:
        prove_state(raised, account_key(ALICE.address), 11)
    assert caught.value.code == "pruned"
    chain.store = raised
    chain.random_blocks(3)
    assert undo_heights(raised) == list(range(13, 19)) and oldest_provable_height(raised) == 12
    check_account_proof(raised, chain, 12)


# --------------------------------------------------------------------------- change points


def vote_chain(store: ChainStore) -> RandomChain:
    """A chain whose set grows to two validators and shrinks back, twice (R34: a change
    decided in block H signs from H+2, so header H+1 is the change point)."""
    chain = started_chain(store, seed=30)
    chain.commit([chain.sign(ALICE, "transfer", {"to": SECOND_VALIDATOR.address, "amount": 10_000})])
    for _ in range(2):
        chain.random_blocks(2)
        chain.commit(chain.vote("add", (VALIDATOR,)))
        chain.random_blocks(3)
        chain.commit(chain.vote("remove", (VALIDATOR, SECOND_VALIDATOR)))
        chain.random_blocks(2)
    return chain


def test_change_points_are_exactly_the_headers_whose_next_set_differs(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = vote_chain(store)
    headers = [result.block.header for result in chain.results]
    expected = [header.height for header in headers if header.next_validators_hash != header.validators_hash]
    assert len(expected) == 4
    points, cursor = change_points(store, 0, 100)
    assert cursor is None
    assert [point.height for point in points] == expected
    for point in points:
        header = headers[point.height - 1]
        assert Header.from_map(codec.decode(point.header)) == header
        assert point.header == codec.encode(header.to_map())
        assert point.commit == chain.commits[point.height - 1]
        signers = [member.address for member in chain.sets[header.validators_hash]]
        verify_commit(point.commit, CHAIN_ID, header.hash, point.height, signers)
        assert list(point.next_validators) == sorted(point.next_validators)
        assert validators_hash(point.next_validators) == header.next_validators_hash
    assert points[0].next_validators == tuple(sorted([VALIDATOR.address, SECOND_VALIDATOR.address]))
    assert points[1].next_validators == (VALIDATOR.address,)


def test_a_validator_removed_by_evidence_makes_a_change_point(open_store: Callable[..., ChainStore]) -> None:
    """R27: a block carrying evidence removes the validator from H+2, so header H+1 is a
    change point whose next set lacks it."""
    store = open_store()
    chain = started_chain(store, seed=31)
    chain.commit([chain.sign(ALICE, "transfer", {"to": SECOND_VALIDATOR.address, "amount": 10_000})])
    chain.commit(chain.vote("add", (VALIDATOR,)))
    chain.random_blocks(3)
    signed_by_two = chain.head.height
    assert len(chain.sets[chain.results[-1].block.header.validators_hash]) == 2
    carrying = chain.commit([], evidence=(chain.equivocation(SECOND_VALIDATOR, signed_by_two),)).block.header.height
    chain.random_blocks(2)
    points = change_points(store, 0, 100)[0]
    assert [point.height for point in points] == [3, carrying + 1]
    assert points[-1].next_validators == (VALIDATOR.address,)
    header = chain.results[carrying].block.header
    assert validators_hash(points[-1].next_validators) == header.next_validators_hash != header.validators_hash


def test_change_points_page_by_cursor(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    vote_chain(store)
    everything = [point.height for point in change_points(store, 0, 100)[0]]
    pages: list[int] = []
    after: int | None = 0
    while after is not None:
        points, after = change_points(store, after, 1)
        pages += [point.height for point in points]
        assert len(points) == 1
    assert pages == everything
    assert change_points(store, everything[1], 2) == (change_points(store, everything[1], 100)[0], None)
    assert change_points(store, everything[-1], 5) == ([], None)
    with pytest.raises(ValueError):
        change_points(store, 0, 0)


def test_change_points_outlive_keep_state(open_store: Callable[..., ChainStore]) -> None:
    """R40: every change point is kept forever, whatever keep_state prunes."""
    store = open_store(keep_state=1)
    chain = vote_chain(store)
    assert undo_heights(store) == []
    assert len(change_points(store, 0, 100)[0]) == 4
    check_account_proof(store, chain, chain.head.height)


# --------------------------------------------------------------------------- reopen and refusals


def test_reopening_keeps_the_tree_the_proofs_and_the_change_points(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = vote_chain(store)
    before = dict(store.db.iterator())
    points = change_points(store, 0, 100)
    store.close()
    reopened = open_store()
    assert reopened.initialize(make_genesis()) == chain.head
    assert dict(reopened.db.iterator()) == before
    assert change_points(reopened, 0, 100) == points
    chain.store = reopened
    for height in range(chain.head.height + 1):
        check_account_proof(reopened, chain, height)
    chain.random_blocks(2)  # and it goes on from there
    check_account_proof(reopened, chain, chain.head.height - 1)


def test_a_v1_database_without_a_tree_is_refused_with_advice(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    started_chain(store, seed=40).random_blocks(3)
    for key in list(store.db.iterator(prefix=storage.TREE, include_value=False)):
        store.db.delete(key)
    store.close()
    with pytest.raises(StorageError, match="protocol v1.*fresh home"):
        open_store().initialize(make_genesis())


def test_a_tree_that_disagrees_with_the_head_is_refused(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = started_chain(store, seed=41)
    chain.random_blocks(3)
    root_key = storage.TREE + storage.ROOT_POSITION
    record = store.db.get(root_key)
    store.db.put(root_key, record[:-1] + bytes([record[-1] ^ 1]))
    store.close()
    with pytest.raises(StorageError, match=f"not the head's state root {chain.head.state_root.hex()}"):
        open_store().initialize(make_genesis())


def test_one_old_height_rebuild_at_a_time(open_store: Callable[..., ChainStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """Old-height proofs rebuild their tree one at a time (memory and CPU bound,
    MAX_CONCURRENT_REBUILDS); proofs at the head never wait for them."""
    store = open_store()
    chain = started_chain(store, seed=50)
    chain.random_blocks(4)
    inside = threading.Semaphore(0)
    release = threading.Event()
    active: list[int] = []
    real_update_tree = state_history.update_tree

    def slow_update_tree(reader, changes):  # type: ignore[no-untyped-def]
        active.append(1)
        inside.release()
        assert release.wait(timeout=60)
        result = real_update_tree(reader, changes)
        active.pop()
        return result

    monkeypatch.setattr(state_history, "update_tree", slow_update_tree)
    threads = [threading.Thread(target=check_account_proof, args=(store, chain, height)) for height in (1, 2, 3)]
    for thread in threads:
        thread.start()
    try:
        assert inside.acquire(timeout=60)
        check_account_proof(store, chain, chain.head.height)  # the head needs no rebuild
        assert not inside.acquire(timeout=0.5), "a second rebuild started while one was running"
        assert len(active) == 1
    finally:
        release.set()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert active == []


def test_undo_entry_count_reads_the_size_of_a_rebuild_without_decoding(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = started_chain(store, seed=60)
    chain.random_blocks(6, max_transactions=20)
    chain.commit(chain.random_transactions(40))  # a record of more than 15 entries (a 0xdc header)
    with store.read_view() as view:
        for first in range(1, chain.head.height + 1):
            expected = sum(len(result.changes) for result in chain.results[first - 1:])
            assert view.undo_entry_count(first, chain.head.height) == expected
            assert expected == sum(len(record) for _, record in view.undo_records(first, chain.head.height))
        assert view.undo_entry_count(chain.head.height + 1, chain.head.height + 5) == 0
    assert len(chain.results[-1].changes) > 15
