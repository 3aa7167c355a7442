"""ChainStore on a real LevelDB: genesis, atomic synced block commits, reads, reopen, replay.

node/storage.py promises that everything one block changes is written in one atomic,
synced batch. These tests drive it with real signed transactions, blocks built by the
state machine (`build_block`) and commits sealed by `sign_commit`, and check every
index and the state against an independent model of the transfers and roles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import node.storage as storage
from consensus.commit import sign_commit, verify_commit
from marketplace_tx.chain.block import Block, Commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.accounts import Account, has_role, load_account, roles_of
from marketplace_tx.rules.state import MemoryStateReader, State
from marketplace_tx.rules.state_keys import ACCOUNT, account_key, role_key
from marketplace_tx.rules.state_transition import (
    BlockResult,
    ChainTip,
    apply_block,
    build_block,
    genesis_changes,
)
from node.storage import ChainStore, StorageError, TxLocation

CHAIN_ID = "marketchain-storage-test"
GENESIS_TIME = 1_700_000_000_000
BLOCK_INTERVAL_MS = 1_000
FEE = 10
START_BALANCE = 1_000_000
VALIDATOR_BALANCE = 5_000_000


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


VALIDATOR = key("validator")
ALICE, BOB, CAROL, DAVE = key("alice"), key("bob"), key("carol"), key("dave")
NEWCOMER = key("newcomer")
"""Holds nothing at genesis: its account is created by a transfer."""
USERS = (ALICE, BOB, CAROL, DAVE)


def make_genesis(chain_id: str = CHAIN_ID) -> Genesis:
    balances = {user.address: START_BALANCE for user in USERS}
    balances[VALIDATOR.address] = VALIDATOR_BALANCE
    accounts = tuple(GenesisAccount(address, balances[address]) for address in sorted(balances))
    genesis = Genesis(chain_id, GENESIS_TIME, (VALIDATOR.address,), accounts, Params())
    genesis.validate()
    return genesis


def everything(store: ChainStore) -> dict[bytes, bytes]:
    """Every key and value in the database, metadata included."""
    return dict(store.db.iterator())


def state_pairs(store: ChainStore) -> dict[bytes, bytes]:
    """Every committed state pair, read through the raw S-prefixed keys."""
    return {key[1:]: value for key, value in store.db.iterator(prefix=storage.STATE)}


# --------------------------------------------------------------------------- a model of the chain


@dataclass
class Model:
    """What the transfers and role changes should have done, computed without the state machine."""

    balances: dict[bytes, int]
    nonces: dict[bytes, int] = field(default_factory=dict)
    roles: set[tuple[bytes, str]] = field(default_factory=set)

    def apply(self, tx: Transaction) -> str | None:
        """Apply `tx` as R11 says; return its error code, None if it succeeded."""
        self.balances[tx.sender] -= tx.fee
        self.balances[VALIDATOR.address] += tx.fee
        self.nonces[tx.sender] = self.nonces.get(tx.sender, 0) + 1
        payload = tx.payload
        if tx.type == "transfer":
            if self.balances[tx.sender] < payload["amount"]:
                return "insufficient_funds"
            self.balances[tx.sender] -= payload["amount"]
            self.balances[payload["to"]] = self.balances.get(payload["to"], 0) + payload["amount"]
            return None
        held = (payload["account"], payload["role"])
        if tx.type == "role_grant":
            if held in self.roles:
                return "already_exists"
            self.roles.add(held)
            return None
        assert tx.type == "role_revoke"
        if held not in self.roles:
            return "not_found"
        self.roles.discard(held)
        return None


class Wallet:
    """Signs transactions with each sender's next nonce."""

    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}

    def _nonce(self, sender: KeyPair) -> int:
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        return nonce

    def transfer(self, sender: KeyPair, to: KeyPair, amount: int, memo: str | None = None) -> Transaction:
        payload: dict[str, Any] = {"to": to.address, "amount": amount}
        if memo is not None:
            payload["memo"] = memo
        return sign_transaction(sender, CHAIN_ID, "transfer", payload, self._nonce(sender), FEE)

    def role_change(self, tx_type: str, account: KeyPair, role: str) -> Transaction:
        payload: dict[str, Any] = {"account": account.address, "role": role}
        if tx_type == "role_grant":
            payload["evidence_hash"] = hashlib.sha256(b"kyc:" + account.address).digest()
        return sign_transaction(VALIDATOR, CHAIN_ID, tx_type, payload, self._nonce(VALIDATOR), FEE)


def _block_1(wallet: Wallet) -> list[Transaction]:
    return [
        wallet.transfer(ALICE, BOB, 1_000, memo="rent for March"),
        wallet.transfer(ALICE, CAROL, 2_500),
        wallet.transfer(BOB, DAVE, 500),
        wallet.role_change("role_grant", CAROL, "carrier"),
    ]


def _block_2(wallet: Wallet) -> list[Transaction]:
    return [
        wallet.transfer(DAVE, ALICE, 10**9),  # fails: insufficient_funds, still pays the fee
        wallet.transfer(CAROL, NEWCOMER, 777),  # creates the newcomer's account
        wallet.role_change("role_grant", CAROL, "carrier"),  # fails: already_exists
    ]


def _block_3(wallet: Wallet) -> list[Transaction]:
    return [
        wallet.role_change("role_revoke", CAROL, "carrier"),  # deletes a state key
        wallet.role_change("role_revoke", DAVE, "arbiter"),  # fails: not_found
        wallet.role_change("role_grant", DAVE, "arbiter"),
    ]


def _block_4(wallet: Wallet) -> list[Transaction]:
    return []  # an empty block


def _block_5(wallet: Wallet) -> list[Transaction]:
    receivers = USERS[1:] + USERS[:1]
    return [
        wallet.transfer(sender, receiver, 100 + round_number, memo=f"round {round_number}")
        for round_number in range(3)
        for sender, receiver in zip(USERS, receivers, strict=True)
    ]


Plan = Callable[[Wallet], list[Transaction]]
"""The transactions of one block, in order."""

PLANS: tuple[Plan, ...] = (_block_1, _block_2, _block_3, _block_4, _block_5)


@dataclass
class Chain:
    """Blocks committed to a store, with what the test expects of them."""

    genesis: Genesis
    model: Model
    wallet: Wallet
    tips: list[ChainTip]
    """tips[h] is the head after height h (tips[0]: genesis)."""
    results: list[BlockResult] = field(default_factory=list)
    """results[h - 1] built block h."""
    commits: list[Commit] = field(default_factory=list)
    codes: list[list[str | None]] = field(default_factory=list)
    """Expected error code of each transaction of each block (None: ok)."""


def next_block(
    store: ChainStore, genesis: Genesis, tip: ChainTip, last_commit: Commit | None, txs: list[Transaction]
) -> tuple[BlockResult, Commit]:
    """Build the child of `tip` over the store's state and seal it with the validator's commit."""
    result = build_block(
        store, tip, genesis.chain_id, genesis.params, VALIDATOR.address,
        tip.time + BLOCK_INTERVAL_MS, txs, last_commit,
    )
    assert [tx.hash for tx in result.transactions] == [tx.hash for tx in txs], "a candidate was skipped"
    commit = sign_commit([VALIDATOR], genesis.chain_id, result.block.header.height, 0, result.block.hash)
    return result, commit


def build_chain(store: ChainStore, genesis: Genesis) -> Chain:
    """Commit every block of PLANS to `store` (initialized from `genesis`)."""
    head = store.head()
    assert head is not None and head.height == 0
    model = Model({account.address: account.balance for account in genesis.accounts})
    chain = Chain(genesis, model, Wallet(), [head])
    for plan in PLANS:
        txs = plan(chain.wallet)
        codes = [model.apply(tx) for tx in txs]
        tip = chain.tips[-1]
        result, commit = next_block(store, genesis, tip, chain.commits[-1] if chain.commits else None, txs)
        new_tip = store.commit_block(result, commit)
        assert new_tip == ChainTip(
            tip.height + 1, result.block.hash, result.block.header.time, result.block.header.state_root
        )
        assert store.head() == new_tip
        chain.tips.append(new_tip)
        chain.results.append(result)
        chain.commits.append(commit)
        chain.codes.append(codes)
    return chain


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., ChainStore]]:
    """Open ChainStores (default: tmp_path/db); all are closed at teardown."""
    opened: list[ChainStore] = []

    def opener(name: str = "db") -> ChainStore:
        store = ChainStore(tmp_path / name)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


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


def check_chain_reads(store: ChainStore, chain: Chain) -> None:
    """Every block, commit, index, receipt and state value matches what was committed."""
    head = chain.tips[-1]
    assert store.head() == head
    for height in range(1, head.height + 1):
        result, commit = chain.results[height - 1], chain.commits[height - 1]
        block = result.block
        assert store.block_bytes(height) == block.encode()
        assert store.block(height) == block
        assert store.block(height).hash == chain.tips[height].block_hash  # type: ignore[union-attr]
        assert store.commit(height) == commit
        verify_commit(store.commit(height), CHAIN_ID, block.hash, height, (VALIDATOR.address,))  # type: ignore[arg-type]
        assert store.height_of_block(block.hash) == height
        for index, tx in enumerate(result.transactions):
            assert store.tx_location(tx.hash) == TxLocation(height, index)
        receipts = store.receipts(height)
        assert receipts == list(result.receipts)
        assert [receipt.code for receipt in receipts] == chain.codes[height - 1]
        assert [receipt.ok for receipt in receipts] == [code is None for code in chain.codes[height - 1]]
    above = head.height + 1
    assert store.block_bytes(above) is None and store.block(above) is None
    assert store.commit(above) is None and store.receipts(above) == []
    assert store.height_of_block(bytes(32)) is None
    assert store.tx_location(bytes(32)) is None


def check_state(store: ChainStore, chain: Chain) -> None:
    """The committed state equals the model, and equals genesis plus every block's changes."""
    state = State(store)
    model = chain.model
    for address, balance in model.balances.items():
        assert load_account(state, address) == Account(balance, model.nonces.get(address, 0))
    for user in (*USERS, VALIDATOR, NEWCOMER):
        expected = sorted(role for account, role in model.roles if account == user.address)
        if user is VALIDATOR:
            expected = sorted([*expected, "registrar"])
        assert roles_of(state, user.address) == expected
    assert store.get(role_key(CAROL.address, "carrier")) is None  # granted in block 1, revoked in 3
    assert has_role(state, DAVE.address, "arbiter")
    # scan reflects creations: the newcomer's account exists, and the supply is conserved (R17)
    accounts = dict(store.scan(ACCOUNT, ACCOUNT + b"\xff" * 33))
    assert account_key(NEWCOMER.address) in accounts
    assert sum(codec.decode(value)["balance"] for value in accounts.values()) == chain.genesis.total_supply()
    # every pair, deletions included, equals genesis plus the net changes of each block
    expected_state = MemoryStateReader()
    expected_state.apply(genesis_changes(chain.genesis)[1])
    for result in chain.results:
        expected_state.apply(result.changes)
    assert dict(store.scan(b"\x00", b"\xff")) == expected_state.values
    assert state_pairs(store) == expected_state.values


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


# --------------------------------------------------------------------------- refusing blocks


def committed_store(open_store: Callable[..., ChainStore]) -> tuple[ChainStore, Genesis, Chain]:
    genesis = make_genesis()
    store = open_store()
    store.initialize(genesis)
    return store, genesis, build_chain(store, genesis)


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


def test_blocks_are_decoded_as_built(open_store: Callable[..., ChainStore]) -> None:
    """block() decodes what block_bytes() holds, last_commit included (None only for block 1)."""
    store, _, chain = committed_store(open_store)
    first = store.block(1)
    assert isinstance(first, Block) and first.last_commit is None
    for height in range(2, chain.tips[-1].height + 1):
        block = store.block(height)
        assert block is not None and block.last_commit == chain.commits[height - 2]
        assert block.header.prev_hash == chain.tips[height - 1].block_hash
