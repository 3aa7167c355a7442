"""Shared by the execution and block tests (and the node's block budget tests): keys, a
genesis, signed transfers and role changes, one transaction executed. The `chain`
fixture built from `make_genesis()` is in conftest.py."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.accounts import Account, load_account
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.execution import execute_transaction
from marketplace_tx.rules.state import MemoryStateReader, State, StateReader
from marketplace_tx.rules.state_transition import ChainTip

CHAIN_ID = "marketchain-test"
PARAMS = Params()
GENESIS_TIME = 1_700_000_000_000
BLOCK_TIME = GENESIS_TIME + 1_000
UINT64_MAX = 2**64 - 1


def key(name: str) -> KeyPair:
    """A key from a fixed seed derived from `name`."""
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


VALIDATOR = key("validator")
ALICE = key("alice")
BOB = key("bob")
CAROL = key("carol")
OUTSIDER = key("outsider")

ALICE_FUNDS = 1_000_000
BOB_FUNDS = 5_000
CAROL_FUNDS = 300
VALIDATOR_FUNDS = 50_000


def make_genesis(
    balances: dict[bytes, tuple[int, tuple[str, ...]]] | None = None,
    validators: tuple[bytes, ...] = (VALIDATOR.address,),
) -> Genesis:
    """A genesis with `balances` (address -> balance, roles), by default Alice, Bob (a merchant), Carol and the validator."""
    if balances is None:
        balances = {
            ALICE.address: (ALICE_FUNDS, ()),
            BOB.address: (BOB_FUNDS, ("merchant",)),
            CAROL.address: (CAROL_FUNDS, ()),
            VALIDATOR.address: (VALIDATOR_FUNDS, ()),
        }
    accounts = tuple(
        GenesisAccount(address, balance, roles)
        for address, (balance, roles) in sorted(balances.items())
    )
    return Genesis(CHAIN_ID, GENESIS_TIME, tuple(sorted(validators)), accounts, PARAMS)


@dataclasses.dataclass
class Chain:
    """A chain at some height: its genesis, tip and state."""

    genesis: Genesis
    tip: ChainTip
    base: MemoryStateReader


def account(reader: StateReader | State, who: KeyPair) -> Account:
    """The account of `who` in a state or a state reader."""
    state = reader if isinstance(reader, State) else State(reader)
    return load_account(state, who.address)


def transfer(sender: KeyPair, to: KeyPair, amount: int, nonce: int = 0, fee: int = 10, **extra: Any) -> Transaction:
    """A signed transfer."""
    return sign_transaction(sender, CHAIN_ID, "transfer", {"to": to.address, "amount": amount, **extra}, nonce, fee)


def grant(sender: KeyPair, who: KeyPair, role: str, nonce: int = 0) -> Transaction:
    """A signed `role_grant` of `role` to `who`."""
    payload = {"account": who.address, "role": role, "evidence_hash": b"\x42" * 32}
    return sign_transaction(sender, CHAIN_ID, "role_grant", payload, nonce, 10)


def revoke(sender: KeyPair, who: KeyPair, role: str, nonce: int = 0) -> Transaction:
    """A signed `role_revoke` of `role` from `who`."""
    payload = {"account": who.address, "role": role}
    return sign_transaction(sender, CHAIN_ID, "role_revoke", payload, nonce, 10)


def context(proposer: bytes = VALIDATOR.address, height: int = 1) -> BlockContext:
    """The context of a block at `height` proposed by `proposer`."""
    return BlockContext(CHAIN_ID, height, BLOCK_TIME, proposer, PARAMS)


def execute(chain: Chain, tx: Transaction, proposer: bytes = VALIDATOR.address) -> tuple[State, Receipt]:
    """Execute `tx` alone on the chain's state: the changed state and the receipt."""
    state = State(chain.base)
    receipt = execute_transaction(state, context(proposer), tx, 0)
    return state, receipt
