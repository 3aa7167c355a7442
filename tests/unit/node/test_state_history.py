"""The state tree in LevelDB (R35) and state proofs at the head and at older kept
heights (R36, R38, R40), on a real LevelDB fed random blocks (state_history_chain.py).

Checked against references that share nothing with the fast paths: the plain recursive
T(S, d) of R35 over every stored pair (`subtree_root`), the tree rebuilt from scratch,
and the R36 verifier (`verify_state_proof`) against the state roots of the headers.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest

import node.storage as storage
from consensus.commit import sign_commit
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import InvalidProof, subtree_root, verify_state_proof
from marketplace_tx.rules.state_keys import account_key, role_key
from marketplace_tx.rules.state_transition import build_block
from marketplace_tx.rules.state_tree import MemoryTree, tree_root, update_tree
from node.state_history import ProofUnavailable, oldest_provable_height, prove_state
from node.storage import ChainStore
from tests.unit.node.chain_store_model import (
    ALICE,
    BLOCK_INTERVAL_MS,
    BOB,
    CAROL,
    CHAIN_ID,
    USERS,
    VALIDATOR,
    make_genesis,
)
from tests.unit.node.state_history_chain import RandomChain, started_chain, store_opener

open_store = store_opener
"""ChainStores on the test's tmp_path (a fixture)."""


def stored_tree(store: ChainStore) -> dict[bytes, bytes]:
    """Every tree record in the database, by position."""
    return {key[len(storage.TREE):]: value for key, value in store.db.iterator(prefix=storage.TREE)}


def reference_tree(pairs: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The records of a tree built from scratch over `pairs`."""
    tree = MemoryTree()
    tree.apply(update_tree(tree, pairs))
    return tree.records


def probe_keys(chain: RandomChain) -> list[bytes]:
    """Keys present at some height, deleted ones included, and keys never present."""
    keys: set[bytes] = set()
    for state in chain.states:
        keys.update(state)
    keys.update({account_key(bytes(32)), role_key(ALICE.address, "no such role"), b"", b"z" * 40})
    return sorted(keys)


# --------------------------------------------------------------------------- the stored tree


def test_genesis_writes_the_tree_of_the_genesis_state(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    tip = store.initialize(make_genesis())
    pairs = dict(store.scan(b"\x00", b"\xff"))
    assert tree_root(store) == tip.state_root == subtree_root(pairs.items())
    assert stored_tree(store) == reference_tree(pairs)
    with store.read_view() as view:
        assert view.tree_node(storage.ROOT_POSITION) == store.tree_node(storage.ROOT_POSITION) is not None
        assert view.genesis_state_root() == tip.state_root


def test_the_stored_tree_is_the_state_tree_after_every_block(open_store: Callable[..., ChainStore]) -> None:
    """Root = header state_root = R35's T(every entry, 0), and the stored records are exactly
    those of the tree built from scratch (nothing stale is left), after every random block
    (creations, updates, deletions, empty blocks)."""
    store = open_store()
    chain = started_chain(store, seed=1)
    deleted = 0
    for _ in range(40):
        result = chain.commit(chain.random_transactions(chain.rng.randint(0, 15)))
        deleted += sum(value is None for value in result.changes.values())
        pairs = dict(store.scan(b"\x00", b"\xff"))
        assert pairs == chain.states[-1]
        assert tree_root(store) == result.block.header.state_root == chain.head.state_root
        assert result.block.header.state_root == subtree_root(pairs.items())
        assert stored_tree(store) == reference_tree(pairs)
        # the in-memory upper records agree with the database after every commit
        cached = dict(store._tree_cache)
        assert cached and all(store._tree.get(position) == record for position, record in cached.items())
    assert deleted > 0, "the random blocks deleted no key: the test proves less than it says"


def test_a_result_whose_tree_disagrees_with_its_header_is_refused(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = started_chain(store, seed=2)
    chain.random_blocks(2)
    tip = chain.head
    result = build_block(
        store, tip, CHAIN_ID, chain.genesis.params, VALIDATOR.address, tip.time + BLOCK_INTERVAL_MS,
        chain.random_transactions(3), chain.commits[-1],
    )
    assert result.tree is not None
    wrong = dataclasses.replace(result, tree=dataclasses.replace(result.tree, root=bytes(32)))
    before = dict(store.db.iterator())
    commit = sign_commit([VALIDATOR], CHAIN_ID, tip.height + 1, 0, result.block.hash)
    with pytest.raises(storage.StorageError, match="state root"):
        store.commit_block(wrong, commit)
    assert dict(store.db.iterator()) == before


# --------------------------------------------------------------------------- proofs


def check_proof(store: ChainStore, chain: RandomChain, key: bytes, height: int | None) -> None:
    """The node's proof of `key` at `height` verifies against that header's root and
    shows the value the state really held then."""
    target = chain.head.height if height is None else height
    proof, state_root = prove_state(store, key, height)
    assert state_root == chain.tips[target].state_root
    if target > 0:
        assert state_root == chain.results[target - 1].block.header.state_root
    verify_state_proof(proof, key, target, state_root)
    assert proof.height == target and proof.key == key
    assert proof.value == chain.states[target].get(key)


def test_proofs_at_the_head_verify_for_present_and_absent_keys(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = started_chain(store, seed=3)
    chain.random_blocks(12)
    keys = probe_keys(chain)
    assert any(key not in chain.states[-1] for key in keys) and any(key in chain.states[-1] for key in keys)
    for key in keys:
        check_proof(store, chain, key, None)
        check_proof(store, chain, key, chain.head.height)


def test_proofs_at_every_kept_height_verify_against_that_header(open_store: Callable[..., ChainStore]) -> None:
    """Inclusion and absence at every height 0 … head, for keys that were created,
    changed and deleted in between: the undo records rebuild each old version exactly."""
    store = open_store()
    chain = started_chain(store, seed=4)
    chain.random_blocks(25)
    assert oldest_provable_height(store) == 0
    keys = probe_keys(chain)
    for height in range(chain.head.height + 1):
        for key in keys:
            check_proof(store, chain, key, height)


def test_a_proof_at_one_height_does_not_verify_at_another(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = started_chain(store, seed=5)
    chain.random_blocks(6)
    key = account_key(BOB.address)
    proof, state_root = prove_state(store, key, 3)
    with pytest.raises(InvalidProof):
        verify_state_proof(proof, key, 4, state_root)
    with pytest.raises(InvalidProof):
        verify_state_proof(proof, key, 3, chain.tips[4].state_root)
    with pytest.raises(InvalidProof):
        verify_state_proof(proof, account_key(CAROL.address), 3, state_root)


def test_heights_above_the_head_are_not_found(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    chain = started_chain(store, seed=6)
    chain.random_blocks(3)
    for height in (4, 5, 10**12):
        with pytest.raises(ProofUnavailable) as caught:
            prove_state(store, account_key(ALICE.address), height)
        assert caught.value.code == "not_found" and "above the head 3" in caught.value.message
    with pytest.raises(ProofUnavailable) as caught:
        prove_state(store, account_key(ALICE.address), -1)
    assert caught.value.code == "not_found"


def test_an_empty_database_proves_nothing(open_store: Callable[..., ChainStore]) -> None:
    store = open_store()
    with pytest.raises(ProofUnavailable) as caught:
        prove_state(store, account_key(ALICE.address), None)
    assert caught.value.code == "not_found"


def test_heights_older_than_keep_state_are_pruned(open_store: Callable[..., ChainStore]) -> None:
    store = open_store(keep_state=5)
    chain = started_chain(store, seed=7)
    chain.random_blocks(12)
    assert oldest_provable_height(store) == 12 - 5 + 1
    for height in range(8, 13):
        check_proof(store, chain, account_key(ALICE.address), height)
    for height in (0, 1, 6, 7):
        with pytest.raises(ProofUnavailable) as caught:
            prove_state(store, account_key(ALICE.address), height)
        assert caught.value.code == "pruned"
        assert "oldest provable height is 8" in caught.value.message


def test_a_tree_that_cannot_rebuild_an_old_root_serves_no_proof(open_store: Callable[..., ChainStore]) -> None:
    """A damaged undo record must give an error, never a proof against a wrong root."""
    store = open_store()
    chain = started_chain(store, seed=8)
    for user in USERS:
        chain.commit([chain.sign(user, "transfer", {"to": ALICE.address, "amount": 5})])
    undo_key = storage.UNDO + (3).to_bytes(8, "big")
    record = codec.decode(store.db.get(undo_key))
    record[0][1] = None if record[0][1] is not None else b"forged"
    store.db.put(undo_key, codec.encode(record))
    with pytest.raises(storage.StorageError, match="height 2"):
        prove_state(store, account_key(ALICE.address), 2)
    check_proof(store, chain, account_key(ALICE.address), 3)  # heights not needing record 3 are fine


def test_proofs_read_one_snapshot_while_blocks_are_committed(open_store: Callable[..., ChainStore]) -> None:
    """A proof asked while the next blocks are written mixes no two versions: it always
    verifies against the root of the header it names (R38)."""
    store = open_store()
    chain = started_chain(store, seed=9)
    chain.random_blocks(2)
    key = account_key(ALICE.address)
    writer_done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(30):
                chain.commit([chain.sign(ALICE, "transfer", {"to": BOB.address, "amount": 1})])
        except BaseException as error:  # reported by the test thread
            failures.append(error)
        finally:
            writer_done.set()

    answers = []
    writer = threading.Thread(target=write)
    writer.start()
    while not writer_done.is_set():
        answers.append(prove_state(store, key, None))
        proof, state_root = answers[-1]
        answers.append(prove_state(store, key, max(0, proof.height - 1)))
    writer.join()
    assert not failures, failures
    heights = {proof.height for proof, _ in answers}
    assert len(answers) >= 2
    for proof, state_root in answers:
        assert state_root == chain.tips[proof.height].state_root
        verify_state_proof(proof, key, proof.height, state_root)
        assert proof.value == chain.states[proof.height][key]
    print(f"{len(answers)} proofs at {len(heights)} heights while 30 blocks were written")
