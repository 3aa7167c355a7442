"""A ChainStore test chain: keys, a genesis, five blocks of real signed transactions built
by the state machine and sealed by commits, and an independent model of what they do.

The storage tests (test_chain_store_*.py) build this chain on a real LevelDB and check
every index and the state against the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import node.storage as storage
from consensus.commit import sign_commit, verify_commit
from marketplace_tx.chain.block import Commit
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
    build_block,
    genesis_changes,
)
from node.storage import ChainStore, TxLocation

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


def store_opener(directory: Path) -> Iterator[Callable[..., ChainStore]]:
    """Open ChainStores (default: DIRECTORY/db); all are closed when the generator ends."""
    opened: list[ChainStore] = []

    def opener(name: str = "db", keep_state: int = 1000) -> ChainStore:
        store = ChainStore(directory / name, keep_state=keep_state)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


def committed_store(open_store: Callable[..., ChainStore]) -> tuple[ChainStore, Genesis, Chain]:
    genesis = make_genesis()
    store = open_store()
    store.initialize(genesis)
    return store, genesis, build_chain(store, genesis)


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
        expected_state.apply(result.changes, result.tree)
    assert dict(store.scan(b"\x00", b"\xff")) == expected_state.values
    assert state_pairs(store) == expected_state.values
