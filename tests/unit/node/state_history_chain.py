"""A random chain on a real LevelDB for the state-history tests (test_state_history*.py).

Blocks of signed transfers (some to fresh addresses, creating accounts, some failing),
role grants and revocations (creating and deleting state keys), empty blocks, and
validator votes that add and remove a second validator (change points, R37), built by
`build_block` over the store and committed with `commit_block`, exactly as a node does.
Every state after every height is kept in memory, so a test can compare what the node
proves at an old height with the state that really was.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consensus.commit import sign_commit
from consensus.vote import Vote
from marketplace_tx.chain.block import Commit
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.evidence import make_evidence
from marketplace_tx.rules.schema import ROLES
from marketplace_tx.rules.state_transition import BlockResult, ChainTip, build_block
from marketplace_tx.rules.validators import validators_hash
from node.storage import ChainStore
from tests.unit.node import chain_store_model
from tests.unit.node.chain_store_model import (
    BLOCK_INTERVAL_MS,
    CHAIN_ID,
    FEE,
    USERS,
    VALIDATOR,
    key,
    make_genesis,
)

SECOND_VALIDATOR = key("second validator")
"""Joins and leaves the set by `validator_vote`."""


@dataclass
class RandomChain:
    """A store fed random blocks; what every height's state was, for the tests to check."""

    store: ChainStore
    genesis: Genesis
    rng: random.Random
    tips: list[ChainTip] = field(default_factory=list)
    """tips[h]: the head after height h."""
    states: list[dict[bytes, bytes]] = field(default_factory=list)
    """states[h]: every state pair after height h."""
    results: list[BlockResult] = field(default_factory=list)
    """results[h - 1] built block h."""
    commits: list[Commit] = field(default_factory=list)
    """commits[h - 1] finalized block h."""
    nonces: dict[bytes, int] = field(default_factory=dict)
    granted: set[tuple[bytes, str]] = field(default_factory=set)
    """Roles granted by the chain's transactions (they may have failed: a guess)."""
    sets: dict[bytes, tuple[KeyPair, ...]] = field(default_factory=dict)
    """Every validator set seen, by its hash (R23)."""

    @classmethod
    def start(cls, store: ChainStore, genesis: Genesis, seed: int) -> RandomChain:
        """A chain on `store`, already initialized from `genesis` (height 0)."""
        tip = store.head()
        assert tip is not None and tip.height == 0
        chain = cls(store, genesis, random.Random(seed), [tip], [dict(store.scan(b"\x00", b"\xff"))])
        for members in ((VALIDATOR,), (VALIDATOR, SECOND_VALIDATOR)):
            chain.sets[validators_hash([member.address for member in members])] = members
        return chain

    def sign(self, sender: KeyPair, tx_type: str, payload: dict[str, Any]) -> Transaction:
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        return sign_transaction(sender, CHAIN_ID, tx_type, payload, nonce, FEE)

    def random_transactions(self, count: int) -> list[Transaction]:
        """`count` random transfers and role changes."""
        transactions = []
        for _ in range(count):
            draw = self.rng.random()
            if draw < 0.3:
                account = self.rng.choice(USERS).address
                role = self.rng.choice(ROLES)
                if (account, role) in self.granted and draw < 0.2:
                    self.granted.discard((account, role))
                    transactions.append(self.sign(VALIDATOR, "role_revoke", {"account": account, "role": role}))
                else:
                    self.granted.add((account, role))
                    evidence_hash = hashlib.sha256(account + role.encode()).digest()
                    payload = {"account": account, "role": role, "evidence_hash": evidence_hash}
                    transactions.append(self.sign(VALIDATOR, "role_grant", payload))
            else:
                sender = self.rng.choice(USERS)
                to = self.rng.randbytes(32) if draw > 0.85 else self.rng.choice(USERS).address
                amount = 10**15 if draw < 0.35 else self.rng.randint(1, 1_000)  # 10**15: fails
                transactions.append(self.sign(sender, "transfer", {"to": to, "amount": amount}))
        return transactions

    def vote(self, action: str, voters: tuple[KeyPair, ...]) -> list[Transaction]:
        """Votes of `voters` to add or remove SECOND_VALIDATOR (R34)."""
        payload = {"action": action, "validator": SECOND_VALIDATOR.address}
        return [self.sign(voter, "validator_vote", payload) for voter in voters]

    def commit(self, transactions: list[Transaction], evidence: tuple[dict, ...] = ()) -> BlockResult:
        """Build the next block of `transactions` (and `evidence`) over the store, seal it and commit it."""
        tip = self.tips[-1]
        last_commit = self.commits[-1] if self.commits else None
        result = build_block(
            self.store, tip, CHAIN_ID, self.genesis.params, VALIDATOR.address,
            tip.time + BLOCK_INTERVAL_MS, transactions, last_commit, evidence,
        )
        assert len(result.transactions) == len(transactions), "a candidate was skipped"
        header = result.block.header
        signers = self.sets[header.validators_hash]
        commit = sign_commit(list(signers), CHAIN_ID, header.height, 0, result.block.hash)
        self.tips.append(self.store.commit_block(result, commit))
        self.results.append(result)
        self.commits.append(commit)
        state = dict(self.states[-1])
        for changed, value in result.changes.items():
            if value is None:
                del state[changed]
            else:
                state[changed] = value
        self.states.append(state)
        return result

    def equivocation(self, signer: KeyPair, height: int) -> dict:
        """Evidence that `signer` prevoted two blocks at `height` (R27)."""
        votes = [Vote(CHAIN_ID, height, 0, "prevote", block_hash) for block_hash in (b"\x01" * 32, None)]
        return make_evidence(signer.address, *({**vote.to_map(), "signature": vote.sign(signer)} for vote in votes))

    def random_blocks(self, count: int, max_transactions: int = 12) -> None:
        """`count` blocks of 0 … max_transactions random transactions."""
        for _ in range(count):
            self.commit(self.random_transactions(self.rng.randint(0, max_transactions)))

    @property
    def head(self) -> ChainTip:
        """The last committed block."""
        return self.tips[-1]


@pytest.fixture(name="open_store")
def store_opener(tmp_path: Path) -> Iterator[Callable[..., ChainStore]]:
    """Open ChainStores on tmp_path/NAME (with a `keep_state`); all are closed at teardown."""
    yield from chain_store_model.store_opener(tmp_path)


def started_chain(store: ChainStore, seed: int) -> RandomChain:
    """A random chain on `store`, from the test genesis."""
    genesis = make_genesis()
    store.initialize(genesis)
    return RandomChain.start(store, genesis, seed)
