"""Validator governance (R34) and equivocation evidence (R27) in the state machine."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from consensus.commit import sign_commit
from consensus.vote import Vote
from marketplace_tx.chain.block import Commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.evidence import make_evidence
from marketplace_tx.rules.state import MemoryStateReader, State
from marketplace_tx.rules.state_transition import (
    ChainTip,
    apply_block,
    build_block,
    genesis_changes,
)
from marketplace_tx.rules.validators import load_validators, set_at, validators_hash

CHAIN_ID = "marketchain-governance"
PARAMS = Params()


def key(number: int) -> KeyPair:
    return KeyPair.from_seed(bytes([number]) * 32)


@dataclass
class Chain:
    """Blocks built and re-validated in memory; each block is proposed by validators[0]."""

    validators: list[KeyPair]
    base: MemoryStateReader = field(default_factory=MemoryStateReader)
    tip: ChainTip | None = None
    nonces: dict[bytes, int] = field(default_factory=dict)
    last_commit: Commit | None = None
    headers: list = field(default_factory=list)

    def __post_init__(self) -> None:
        accounts = tuple(sorted((GenesisAccount(k.address, 10**9) for k in self.validators), key=lambda a: a.address))
        genesis = Genesis(CHAIN_ID, 1_000, tuple(sorted(k.address for k in self.validators)), accounts, PARAMS)
        self.tip, changes = genesis_changes(genesis)
        self.base.apply(changes)

    def block(self, txs=(), evidence=()):  # type: ignore[no-untyped-def]
        assert self.tip is not None
        signing_set = set_at(State(self.base), self.tip.height + 1)
        proposer = sorted(signing_set)[0]
        result = build_block(self.base, self.tip, CHAIN_ID, PARAMS, proposer, self.tip.time + 1000, list(txs),
                             self.last_commit, tuple(evidence))
        apply_block(self.base, self.tip, CHAIN_ID, PARAMS, result.block)
        self.base.apply(result.changes, result.tree)
        header = result.block.header
        self.tip = ChainTip(header.height, header.hash, header.time, header.state_root)
        signers = [k for k in self.validators if k.address in signing_set]
        self.last_commit = sign_commit(signers, CHAIN_ID, header.height, 0, header.hash)
        self.headers.append(header)
        return result

    def vote(self, sender: KeyPair, action: str, validator: bytes) -> Receipt:
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        tx = sign_transaction(sender, CHAIN_ID, "validator_vote", {"action": action, "validator": validator}, nonce, 10)
        return self.block([tx]).receipts[0]


def test_single_validator_adds_a_second_one_from_h_plus_2() -> None:
    alpha, newcomer = key(1), key(9)
    chain = Chain([alpha])
    receipt = chain.vote(alpha, "add", newcomer.address)
    assert receipt.ok, receipt
    decided = chain.headers[-1]
    old_hash = validators_hash([alpha.address])
    new_hash = validators_hash([alpha.address, newcomer.address])
    assert decided.validators_hash == old_hash and decided.next_validators_hash == old_hash
    chain.block()
    assert chain.headers[-1].validators_hash == old_hash
    assert chain.headers[-1].next_validators_hash == new_hash
    chain.block()
    assert chain.headers[-1].validators_hash == new_hash
    assert load_validators(State(chain.base)) == tuple(sorted([alpha.address, newcomer.address]))
    assert set_at(State(chain.base), decided.height) == (alpha.address,)
    assert set_at(State(chain.base), decided.height + 2) == tuple(sorted([alpha.address, newcomer.address]))


def test_more_than_two_thirds_must_vote_identically() -> None:
    keys = [key(1), key(2), key(3)]
    chain = Chain(keys)
    target = key(9).address
    assert chain.vote(keys[0], "add", target).ok
    assert chain.vote(keys[0], "add", target).code == "already_exists"
    assert chain.vote(keys[1], "remove", keys[2].address).ok  # a different change: its own tally
    assert chain.vote(keys[1], "add", target).ok  # 2 of 3: 6 > 6 is false
    assert validators_hash(sorted([*[k.address for k in keys], target])) != chain.headers[-1].next_validators_hash
    receipt = chain.vote(keys[2], "add", target)
    assert receipt.ok and any(event["type"] == "validator_set_change" for event in receipt.events)
    chain.block()
    assert chain.headers[-1].next_validators_hash == validators_hash([*[k.address for k in keys], target])


@pytest.mark.parametrize(
    ("action", "who", "code"),
    [("add", 1, "invalid_state"), ("remove", 9, "invalid_state"), ("remove", 1, "invalid_state")],
)
def test_invalid_changes(action: str, who: int, code: str) -> None:
    alpha = key(1)
    chain = Chain([alpha])
    receipt = chain.vote(alpha, action, key(who).address)
    assert (receipt.ok, receipt.code) == (False, code)
    assert "payload.validator" in receipt.message


def test_only_validators_vote() -> None:
    alpha, outsider = key(1), key(7)
    chain = Chain([alpha])
    chain.nonces[outsider.address] = 0
    tx = sign_transaction(outsider, CHAIN_ID, "validator_vote", {"action": "add", "validator": outsider.address}, 0, 10)
    # the outsider has no balance for the fee: it cannot even be included
    assert chain.block([tx]).transactions == ()
    fund = sign_transaction(alpha, CHAIN_ID, "transfer", {"to": outsider.address, "amount": 1000}, 0, 10)
    chain.nonces[alpha.address] = 1
    chain.block([fund])
    receipt = chain.block([tx]).receipts[0]
    assert (receipt.code, "sender" in receipt.message) == ("forbidden", True)


def signed_vote(signer: KeyPair, height: int, block_hash: bytes | None, round_number: int = 0) -> dict:
    vote = Vote(CHAIN_ID, height, round_number, "prevote", block_hash)
    return {**vote.to_map(), "signature": vote.sign(signer)}


def test_equivocation_evidence_removes_the_validator_from_h_plus_2() -> None:
    keys = [key(1), key(2), key(3), key(4)]
    chain = Chain(keys)
    chain.block()
    cheater = keys[2]
    evidence = make_evidence(cheater.address, signed_vote(cheater, 1, b"\x01" * 32), signed_vote(cheater, 1, None))
    result = chain.block(evidence=[evidence])
    assert any(event["type"] == "validator_punished" for event in result.block_events)
    chain.block()
    chain.block()
    remaining = sorted(k.address for k in keys if k is not cheater)
    assert load_validators(State(chain.base)) == tuple(remaining)
    with pytest.raises(InvalidBlock, match="already punished|no longer"):
        chain.block(evidence=[evidence])


@pytest.mark.parametrize(
    "make",
    [
        lambda c: make_evidence(c.address, signed_vote(c, 1, b"\x01" * 32), signed_vote(c, 1, b"\x01" * 32)),
        lambda c: make_evidence(c.address, signed_vote(c, 1, b"\x01" * 32), signed_vote(c, 1, None, 1)),
        lambda c: make_evidence(c.address, signed_vote(c, 1, b"\x01" * 32), {**signed_vote(c, 1, None), "signature": bytes(64)}),
        lambda c: make_evidence(key(8).address, signed_vote(key(8), 1, b"\x01" * 32), signed_vote(key(8), 1, None)),
        lambda c: make_evidence(c.address, signed_vote(c, 5, b"\x01" * 32), signed_vote(c, 5, None)),
        lambda c: {"validator": c.address},
    ],
    ids=["same-hash", "different-round", "bad-signature", "not-a-validator", "future-height", "malformed"],
)
def test_invalid_evidence_makes_the_block_invalid(make) -> None:  # type: ignore[no-untyped-def]
    keys = [key(1), key(2), key(3), key(4)]
    chain = Chain(keys)
    chain.block()
    with pytest.raises(InvalidBlock):
        chain.block(evidence=[make(keys[2])])
