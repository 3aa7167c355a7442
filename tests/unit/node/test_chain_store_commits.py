"""ChainStore on a real LevelDB: genesis, head, atomic synced block commits, reads,
reopen and replay, checked against an independent model of the chain
(chain_store_model.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import node.storage as storage
from marketplace_tx.chain.block import Block
from marketplace_tx.rules.accounts import Account, load_account, roles_of
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import account_key
from marketplace_tx.rules.state_transition import (
    apply_block,
    genesis_changes,
)
from node.storage import ChainStore, StorageError
from tests.unit.node.chain_store_model import (
    ALICE,
    BOB,
    GENESIS_TIME,
    PLANS,
    VALIDATOR,
    build_chain,
    check_chain_reads,
    check_state,
    committed_store,
    everything,
    make_genesis,
    next_block,
    state_pairs,
    store_opener,
)


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., ChainStore]]:
    """Open ChainStores (default: tmp_path/db); all are closed at teardown."""
    yield from store_opener(tmp_path)


# --------------------------------------------------------------------------- genesis and head


def test_head_is_none_before_initialize(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    assert store.head() is None
    assert store.get(account_key(ALICE.address)) is None
    assert everything(store) == {}


def test_initialize_writes_the_genesis_state(open_store: Callable[..., ChainStore]) -> None:
    genesis = make_genesis()
    store = open_store()
    tip = store.initialize(genesis)
    expected_tip, changes = genesis_changes(genesis)
    assert tip == expected_tip
    assert (tip.height, tip.block_hash, tip.time) == (0, genesis.hash, GENESIS_TIME)
    assert store.head() == tip
    assert state_pairs(store) == {key: value for key, value in changes.items() if value is not None}
    state = State(store)
    for account in genesis.accounts:
        assert load_account(state, account.address) == Account(account.balance, 0)
    assert roles_of(state, VALIDATOR.address) == ["registrar"]
    assert store.block(0) is None and store.commit(0) is None and store.receipts(0) == []
    assert store.db.get(storage.GENESIS_HASH_KEY) == genesis.hash


def test_reopening_returns_the_same_head_and_state(open_store: Callable[..., ChainStore]) -> None:
    genesis = make_genesis()
    store = open_store()
    tip = store.initialize(genesis)
    before = everything(store)
    store.close()
    reopened = open_store()
    assert reopened.head() == tip
    assert reopened.initialize(genesis) == tip
    assert everything(reopened) == before, "initialize on an initialized database wrote something"


def test_reopening_with_another_genesis_is_refused(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    tip = store.initialize(make_genesis())
    before = everything(store)
    store.close()
    reopened = open_store()
    other_chain = make_genesis("another-chain")
    other_balances = dataclasses.replace(make_genesis(), genesis_time=GENESIS_TIME + 1)
    for other in (other_chain, other_balances):
        with pytest.raises(StorageError, match=tip.block_hash.hex()):
            reopened.initialize(other)
    assert reopened.head() == tip
    assert everything(reopened) == before


def test_a_database_open_elsewhere_is_refused(open_store: Callable[..., ChainStore]) -> None:
    open_store().initialize(make_genesis())
    with pytest.raises(StorageError, match="cannot open"):
        open_store()


# --------------------------------------------------------------------------- committed blocks


def test_committed_blocks_round_trip(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    genesis = make_genesis()
    store.initialize(genesis)
    chain = build_chain(store, genesis)
    assert chain.tips[-1].height == len(PLANS)
    assert any(code is not None for codes in chain.codes for code in codes)
    assert any(value is None for result in chain.results for value in result.changes.values()), (
        "no block deleted a state key"
    )
    check_chain_reads(store, chain)
    check_state(store, chain)


def test_everything_survives_close_and_reopen(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    genesis = make_genesis()
    store.initialize(genesis)
    chain = build_chain(store, genesis)
    before = everything(store)
    head = store.head()
    store.close()

    reopened = open_store()
    assert reopened.head() == head
    assert reopened.initialize(genesis) == head
    assert everything(reopened) == before
    check_chain_reads(reopened, chain)
    check_state(reopened, chain)
    # and the chain continues from the reopened head
    last = chain.results[-1].block
    extra = chain.wallet.transfer(BOB, ALICE, 1)
    result, commit = next_block(reopened, genesis, head, chain.commits[-1], [extra])  # type: ignore[arg-type]
    assert result.block.header.prev_hash == last.hash
    assert reopened.commit_block(result, commit).height == len(PLANS) + 1


def test_replaying_stored_blocks_on_a_fresh_store_reproduces_everything(
    open_store: Callable[..., ChainStore],
) -> None:
    genesis = make_genesis()
    store = open_store()
    store.initialize(genesis)
    chain = build_chain(store, genesis)

    fresh = open_store("replay")
    tip = fresh.initialize(genesis)
    assert tip == chain.tips[0]
    for height in range(1, chain.tips[-1].height + 1):
        stored_block = store.block(height)
        assert stored_block is not None
        result = apply_block(fresh, tip, genesis.chain_id, genesis.params, stored_block)
        assert result.receipts == chain.results[height - 1].receipts
        commit = store.commit(height)
        assert commit is not None
        tip = fresh.commit_block(result, commit)
        assert tip == chain.tips[height]
        assert tip.state_root == stored_block.header.state_root
        assert fresh.block_bytes(height) == store.block_bytes(height)
        assert fresh.receipts(height) == store.receipts(height)
    assert fresh.head() == store.head()
    assert state_pairs(fresh) == state_pairs(store)
    # every non-state key (blocks, commits, indexes, receipts, head, genesis hash) is identical too
    assert everything(fresh) == everything(store)


def test_blocks_are_decoded_as_built(open_store: Callable[..., ChainStore]) -> None:
    """block() decodes what block_bytes() holds, last_commit included (None only for block 1)."""
    store, _, chain = committed_store(open_store)
    first = store.block(1)
    assert isinstance(first, Block) and first.last_commit is None
    for height in range(2, chain.tips[-1].height + 1):
        block = store.block(height)
        assert block is not None and block.last_commit == chain.commits[height - 2]
        assert block.header.prev_hash == chain.tips[height - 1].block_hash
