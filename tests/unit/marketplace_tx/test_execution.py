"""Executing transactions and blocks (PROTOCOL R11, R12, R17, R23, R24)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.commit import sign_commit
from marketplace_tx.chain.block import Block, Commit, decode_block
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import BLOCK_ENVELOPE_ALLOWANCE, Params
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import Transaction, decode_transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, signing_bytes
from marketplace_tx.primitives.errors import InvalidBlock, InvalidGenesis
from marketplace_tx.primitives.merkle import EMPTY_ROOT, merkle_root
from marketplace_tx.rules.accounts import (
    Account,
    has_role,
    load_account,
    role_record,
    store_account,
)
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.execution import execute_transaction
from marketplace_tx.rules.state import MemoryStateReader, State, StateReader
from marketplace_tx.rules.state_keys import ACCOUNT, account_key
from marketplace_tx.rules.state_root import next_state_root
from marketplace_tx.rules.state_transition import (
    ChainTip,
    apply_block,
    build_block,
    genesis_changes,
)

CHAIN_ID = "marketchain-test"
PARAMS = Params()
GENESIS_TIME = 1_700_000_000_000
BLOCK_TIME = GENESIS_TIME + 1_000
UINT64_MAX = 2**64 - 1


def key(name: str) -> KeyPair:
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
    genesis: Genesis
    tip: ChainTip
    base: MemoryStateReader


@pytest.fixture
def chain() -> Chain:
    genesis = make_genesis()
    tip, changes = genesis_changes(genesis)
    return Chain(genesis, tip, MemoryStateReader(changes))


def account(reader: StateReader | State, who: KeyPair) -> Account:
    state = reader if isinstance(reader, State) else State(reader)
    return load_account(state, who.address)


def transfer(sender: KeyPair, to: KeyPair, amount: int, nonce: int = 0, fee: int = 10, **extra: Any) -> Transaction:
    return sign_transaction(sender, CHAIN_ID, "transfer", {"to": to.address, "amount": amount, **extra}, nonce, fee)


def grant(sender: KeyPair, who: KeyPair, role: str, nonce: int = 0) -> Transaction:
    payload = {"account": who.address, "role": role, "evidence_hash": b"\x42" * 32}
    return sign_transaction(sender, CHAIN_ID, "role_grant", payload, nonce, 10)


def revoke(sender: KeyPair, who: KeyPair, role: str, nonce: int = 0) -> Transaction:
    payload = {"account": who.address, "role": role}
    return sign_transaction(sender, CHAIN_ID, "role_revoke", payload, nonce, 10)


def context(proposer: bytes = VALIDATOR.address, height: int = 1) -> BlockContext:
    return BlockContext(CHAIN_ID, height, BLOCK_TIME, proposer, PARAMS)


def execute(chain: Chain, tx: Transaction, proposer: bytes = VALIDATOR.address) -> tuple[State, Receipt]:
    state = State(chain.base)
    receipt = execute_transaction(state, context(proposer), tx, 0)
    return state, receipt


# --------------------------------------------------------------------------- transfer


def test_transfer_moves_funds_pays_the_proposer_and_bumps_the_nonce(chain: Chain) -> None:
    state, receipt = execute(chain, transfer(ALICE, BOB, 1234, fee=15, memo="tea"))
    assert receipt.ok and receipt.code is None
    assert receipt.committed_form() == {"ok": True}
    assert receipt.events == (
        {"type": "transfer", "from": ALICE.address, "to": BOB.address, "amount": 1234, "memo": "tea"},
    )
    assert account(state, ALICE) == Account(ALICE_FUNDS - 1234 - 15, 1)
    assert account(state, BOB) == Account(BOB_FUNDS + 1234, 0)
    assert account(state, VALIDATOR) == Account(VALIDATOR_FUNDS + 15, 0)
    assert set(state.changes()) == {account_key(a.address) for a in (ALICE, BOB, VALIDATOR)}


def test_transfer_of_the_whole_balance(chain: Chain) -> None:
    state, receipt = execute(chain, transfer(CAROL, ALICE, CAROL_FUNDS - 10))
    assert receipt.ok
    assert account(state, CAROL) == Account(0, 1)
    assert state.get(account_key(CAROL.address)) is not None  # the nonce keeps the record


def test_transfer_to_a_new_account_creates_it(chain: Chain) -> None:
    state, receipt = execute(chain, transfer(ALICE, OUTSIDER, 7))
    assert receipt.ok
    assert account(state, OUTSIDER) == Account(7, 0)


def test_insufficient_funds_still_pays_the_fee_and_bumps_the_nonce(chain: Chain) -> None:
    state, receipt = execute(chain, transfer(CAROL, BOB, CAROL_FUNDS - 10 + 1, fee=10))
    assert not receipt.ok
    assert receipt.code == "insufficient_funds"
    assert receipt.committed_form() == {"code": "insufficient_funds", "ok": False}
    assert list(codec.decode(codec.encode(receipt.committed_form()))) == ["code", "ok"]
    assert receipt.events == ()
    assert account(state, CAROL) == Account(CAROL_FUNDS - 10, 1)
    assert account(state, BOB) == Account(BOB_FUNDS, 0)
    assert account(state, VALIDATOR) == Account(VALIDATOR_FUNDS + 10, 0)
    assert set(state.changes()) == {account_key(CAROL.address), account_key(VALIDATOR.address)}


def test_failed_rule_rolls_back_its_earlier_writes(chain: Chain) -> None:
    """Debit succeeds, then the credit overflows 2^64−1: the debit must be undone too."""
    seed = State(chain.base)
    store_account(seed, BOB.address, Account(UINT64_MAX, 0))
    chain.base.apply(seed.changes())
    state, receipt = execute(chain, transfer(ALICE, BOB, 1, fee=12))
    assert receipt.committed_form() == {"code": "invalid_field", "ok": False}
    assert account(state, ALICE) == Account(ALICE_FUNDS - 12, 1)
    assert account(state, BOB) == Account(UINT64_MAX, 0)
    assert account(state, VALIDATOR) == Account(VALIDATOR_FUNDS + 12, 0)


def test_proposer_may_be_the_sender(chain: Chain) -> None:
    state, receipt = execute(chain, transfer(ALICE, BOB, 100, fee=25), proposer=ALICE.address)
    assert receipt.ok
    assert account(state, ALICE) == Account(ALICE_FUNDS - 100, 1)


def test_invalid_payload_at_execution_is_a_failed_receipt(chain: Chain) -> None:
    """Execution re-checks the schema (R11): a fee is still paid."""
    state, receipt = execute(chain, transfer(ALICE, BOB, 0))
    assert receipt.code == "invalid_field"
    assert "payload.amount" in receipt.message
    assert account(state, ALICE) == Account(ALICE_FUNDS - 10, 1)
    assert account(state, BOB) == Account(BOB_FUNDS, 0)


def test_wrong_nonce_cannot_be_included(chain: Chain) -> None:
    state = State(chain.base)
    with pytest.raises(InvalidBlock, match="nonce"):
        execute_transaction(state, context(), transfer(ALICE, BOB, 1, nonce=1), 0)
    assert state.changes() == {}


def test_unpayable_fee_cannot_be_included(chain: Chain) -> None:
    state = State(chain.base)
    with pytest.raises(InvalidBlock, match="fee"):
        execute_transaction(state, context(), transfer(CAROL, BOB, 1, fee=CAROL_FUNDS + 1), 0)
    with pytest.raises(InvalidBlock, match="fee"):
        execute_transaction(state, context(), transfer(OUTSIDER, BOB, 1), 0)
    assert state.changes() == {}


def test_receipt_map_round_trip() -> None:
    receipt = Receipt(ok=False, code="forbidden", message="sender: no")
    assert Receipt.from_map(receipt.to_map()) == receipt
    ok = Receipt(ok=True, events=({"type": "transfer"},))
    assert Receipt.from_map(ok.to_map()) == ok
    assert "code" not in ok.to_map()


# --------------------------------------------------------------------------- roles


def test_registrar_grants_a_role(chain: Chain) -> None:
    state, receipt = execute(chain, grant(VALIDATOR, CAROL, "carrier"))
    assert receipt.ok
    assert has_role(state, CAROL.address, "carrier")
    assert role_record(state, CAROL.address, "carrier") == {
        "evidence_hash": b"\x42" * 32,
        "granted_by": VALIDATOR.address,
        "height": 1,
    }
    assert receipt.events[0]["type"] == "role_granted"


def test_non_registrar_grant_is_forbidden(chain: Chain) -> None:
    state, receipt = execute(chain, grant(ALICE, CAROL, "carrier"))
    assert receipt.committed_form() == {"code": "forbidden", "ok": False}
    assert not has_role(state, CAROL.address, "carrier")
    assert account(state, ALICE) == Account(ALICE_FUNDS - 10, 1)


def test_merchant_cannot_grant_either(chain: Chain) -> None:
    _, receipt = execute(chain, grant(BOB, CAROL, "merchant"))
    assert receipt.code == "forbidden"


def test_granting_a_held_role_already_exists(chain: Chain) -> None:
    _, receipt = execute(chain, grant(VALIDATOR, BOB, "merchant"))
    assert receipt.code == "already_exists"
    _, receipt = execute(chain, grant(VALIDATOR, VALIDATOR, "registrar"))
    assert receipt.code == "already_exists"


def test_grant_precedence_forbidden_before_already_exists(chain: Chain) -> None:
    _, receipt = execute(chain, grant(ALICE, BOB, "merchant"))
    assert receipt.code == "forbidden"


def test_granted_registrar_can_grant(chain: Chain) -> None:
    state = State(chain.base)
    block = context()
    assert execute_transaction(state, block, grant(VALIDATOR, ALICE, "registrar"), 0).ok
    assert execute_transaction(state, block, grant(ALICE, CAROL, "inspector"), 1).ok
    assert has_role(state, CAROL.address, "inspector")


def test_registrar_revokes_a_role(chain: Chain) -> None:
    state, receipt = execute(chain, revoke(VALIDATOR, BOB, "merchant"))
    assert receipt.ok
    assert not has_role(state, BOB.address, "merchant")
    assert receipt.events[0]["type"] == "role_revoked"


def test_revoking_a_role_not_held_is_not_found(chain: Chain) -> None:
    state, receipt = execute(chain, revoke(VALIDATOR, CAROL, "merchant"))
    assert receipt.committed_form() == {"code": "not_found", "ok": False}
    assert account(state, VALIDATOR) == Account(VALIDATOR_FUNDS, 1)  # paid its fee to itself


def test_non_registrar_revoke_is_forbidden(chain: Chain) -> None:
    state, receipt = execute(chain, revoke(ALICE, BOB, "merchant"))
    assert receipt.code == "forbidden"
    assert has_role(state, BOB.address, "merchant")


def test_revoke_precedence_not_found_before_forbidden(chain: Chain) -> None:
    """R12: existence (not_found) wins over the sender's authority (forbidden)."""
    _, receipt = execute(chain, revoke(ALICE, CAROL, "merchant"))
    assert receipt.code == "not_found"


# --------------------------------------------------------------------------- blocks


def block_1(chain: Chain, txs: list[Transaction], **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "proposer": VALIDATOR.address,
        "time": BLOCK_TIME,
        "candidates": txs,
        "last_commit": None,
        "params": PARAMS,
    }
    arguments.update(overrides)
    return build_block(chain.base, chain.tip, CHAIN_ID, **arguments)


def sample_txs() -> list[Transaction]:
    return [
        transfer(ALICE, BOB, 500),
        transfer(CAROL, ALICE, 10_000),  # insufficient_funds
        grant(VALIDATOR, CAROL, "arbiter"),
        transfer(ALICE, CAROL, 77, nonce=1),
    ]


def test_build_then_apply_agree(chain: Chain) -> None:
    built = block_1(chain, sample_txs())
    header = built.block.header
    assert built.transactions == tuple(sample_txs())
    assert [r.committed_form() for r in built.receipts] == [
        {"ok": True},
        {"code": "insufficient_funds", "ok": False},
        {"ok": True},
        {"ok": True},
    ]
    applied = apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, built.block)
    assert applied.changes == built.changes
    assert applied.receipts == built.receipts
    assert applied.transactions == built.transactions
    # the same through the canonical block bytes
    decoded = decode_block(built.block.encode(), PARAMS.max_block_bytes)
    assert decoded == built.block
    assert apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, decoded).changes == built.changes
    # the header commits to what R23 says
    assert header.chain_id == CHAIN_ID and header.height == 1 and header.time == BLOCK_TIME
    assert header.prev_hash == chain.genesis.hash
    assert header.tx_root == merkle_root([tx.hash for tx in sample_txs()])
    assert header.results_root == merkle_root(
        [codec.encode(receipt.committed_form()) for receipt in built.receipts]
    )
    assert header.state_root == next_state_root(chain.tip.state_root, built.changes)
    assert header.validators_hash == header.next_validators_hash
    assert header.validators_hash == hashlib.sha256(codec.encode([VALIDATOR.address])).digest()
    assert header.proposer == VALIDATOR.address
    assert header.last_commit_hash == hashlib.sha256(b"\x80").digest()  # canonical({})
    assert header.evidence_hash == EMPTY_ROOT
    assert built.block.hash == hashlib.sha256(codec.encode(header.to_map())).digest()
    assert built.block.to_map()["last_commit"] == {}


def test_empty_block(chain: Chain) -> None:
    built = block_1(chain, [])
    assert built.changes == {}
    assert built.block.header.tx_root == EMPTY_ROOT == built.block.header.results_root
    assert built.block.header.state_root == next_state_root(chain.tip.state_root, {})
    assert built.block.header.state_root != chain.tip.state_root
    apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, built.block)


def test_build_skips_candidates_that_cannot_be_included(chain: Chain) -> None:
    later = transfer(ALICE, BOB, 1, nonce=1)
    first = transfer(ALICE, BOB, 2, nonce=0)
    broke = transfer(OUTSIDER, BOB, 1)
    built = block_1(chain, [later, first, broke, first])
    assert built.transactions == (first,)


def test_build_stops_at_max_block_txs(chain: Chain) -> None:
    params = dataclasses.replace(PARAMS, max_block_txs=2)
    txs = [transfer(ALICE, BOB, 1, nonce=n) for n in range(3)]
    built = block_1(chain, txs, params=params)
    assert built.transactions == tuple(txs[:2])
    too_many = block_1(chain, txs)
    with pytest.raises(InvalidBlock, match="max_block_txs"):
        apply_block(chain.base, chain.tip, CHAIN_ID, params, too_many.block)


def test_a_largest_transaction_fits_under_the_smallest_genesis_valid_block() -> None:
    tx = transfer(ALICE, BOB, 5, memo="m" * 200)
    limit = len(tx.raw)
    assert limit >= 256
    params = Params.from_map(
        {**PARAMS.to_map(), "max_tx_bytes": limit, "max_block_bytes": limit + BLOCK_ENVELOPE_ALLOWANCE}
    )
    with pytest.raises(InvalidGenesis, match="max_block_bytes"):
        Params.from_map({**params.to_map(), "max_block_bytes": limit + BLOCK_ENVELOPE_ALLOWANCE - 1})
    genesis = dataclasses.replace(make_genesis(), params=params)
    tip, changes = genesis_changes(genesis)
    base = MemoryStateReader(changes)
    built = build_block(base, tip, CHAIN_ID, params, VALIDATOR.address, BLOCK_TIME, [tx], None)
    assert built.transactions == (tx,)
    assert apply_block(base, tip, CHAIN_ID, params, built.block).transactions == (tx,)


def test_build_block_fills_max_block_bytes_exactly(chain: Chain) -> None:
    txs = [transfer(ALICE, BOB, 1, nonce=nonce) for nonce in range(20)]  # crosses fixarray → array16
    full = block_1(chain, txs)
    exact = dataclasses.replace(PARAMS, max_block_bytes=len(full.block.encode()))
    built = build_block(chain.base, chain.tip, CHAIN_ID, exact, VALIDATOR.address, BLOCK_TIME, txs, None)
    assert built.transactions == tuple(txs)
    assert len(built.block.encode()) == exact.max_block_bytes
    tight = dataclasses.replace(exact, max_block_bytes=exact.max_block_bytes - 1)
    built = build_block(chain.base, chain.tip, CHAIN_ID, tight, VALIDATOR.address, BLOCK_TIME, txs, None)
    assert built.transactions == tuple(txs[:19])
    assert apply_block(chain.base, chain.tip, CHAIN_ID, tight, built.block).transactions == tuple(txs[:19])


def test_block_over_max_block_bytes_is_invalid(chain: Chain) -> None:
    built = block_1(chain, sample_txs())
    params = dataclasses.replace(PARAMS, max_block_bytes=len(built.block.encode()) - 1)
    with pytest.raises(InvalidBlock, match="max_block_bytes"):
        apply_block(chain.base, chain.tip, CHAIN_ID, params, built.block)


def _with_header(block: Block, **changes: Any) -> Block:
    return dataclasses.replace(block, header=dataclasses.replace(block.header, **changes))


TAMPERED_HEADERS = [
    ("tx_root", b"\x00" * 32, "tx_root"),
    ("results_root", b"\x00" * 32, "results_root"),
    ("state_root", b"\x00" * 32, "state_root"),
    ("next_validators_hash", b"\x00" * 32, "next_validators_hash"),
    ("evidence_hash", b"\x00" * 32, "evidence_hash"),
    ("last_commit_hash", b"\x00" * 32, "last_commit_hash"),
    ("validators_hash", b"\x00" * 32, "validators_hash"),
    ("prev_hash", b"\x00" * 32, "prev_hash"),
    ("height", 2, "height"),
    ("height", 0, "height"),
    ("chain_id", "marketchain-other", "chain_id"),
    ("time", GENESIS_TIME, "time"),
    ("time", GENESIS_TIME - 1, "time"),
    ("proposer", OUTSIDER.address, "proposer"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    TAMPERED_HEADERS,
    ids=[f"{field}={value!r}"[:40] for field, value, _ in TAMPERED_HEADERS],
)
def test_tampered_header_is_invalid(chain: Chain, field: str, value: Any, message: str) -> None:
    built = block_1(chain, sample_txs())
    apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, built.block)  # the untouched block is fine
    with pytest.raises(InvalidBlock, match=message):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, _with_header(built.block, **{field: value}))


def test_tampered_body_is_invalid(chain: Chain) -> None:
    built = block_1(chain, sample_txs())
    txs = list(built.block.txs)
    # same transactions in another order: Alice's nonces break
    with pytest.raises(InvalidBlock, match="nonce"):
        apply_block(
            chain.base, chain.tip, CHAIN_ID, PARAMS,
            dataclasses.replace(built.block, txs=(txs[3], txs[0], txs[1], txs[2])),
        )  # fmt: skip
    # a dropped transaction: every root disagrees, tx_root is checked first
    with pytest.raises(InvalidBlock, match="tx_root"):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, dataclasses.replace(built.block, txs=tuple(txs[:3])))


def test_block_1_must_not_carry_a_last_commit(chain: Chain) -> None:
    commit = sign_commit([VALIDATOR], CHAIN_ID, 0, 0, chain.genesis.hash)
    built = block_1(chain, [], last_commit=commit)
    with pytest.raises(InvalidBlock, match="last_commit"):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, built.block)


def test_wrong_nonce_in_a_block_is_invalid(chain: Chain) -> None:
    built = block_1(chain, [transfer(ALICE, BOB, 5)])
    bad = dataclasses.replace(built.block, txs=(transfer(ALICE, BOB, 5, nonce=1).raw,))
    with pytest.raises(InvalidBlock, match="nonce"):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, bad)


def test_duplicated_tx_in_a_block_is_invalid(chain: Chain) -> None:
    tx = transfer(ALICE, BOB, 5)
    built = block_1(chain, [tx])
    with pytest.raises(InvalidBlock, match="nonce"):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, dataclasses.replace(built.block, txs=(tx.raw, tx.raw)))


def test_unpayable_fee_in_a_block_is_invalid(chain: Chain) -> None:
    built = block_1(chain, [])
    bad = dataclasses.replace(built.block, txs=(transfer(OUTSIDER, BOB, 1).raw,))
    with pytest.raises(InvalidBlock, match="fee"):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, bad)


def _forged(sender: KeyPair, signer: KeyPair) -> Transaction:
    body = {
        "chain_id": CHAIN_ID, "fee": 10, "nonce": 0, "payload": {"to": BOB.address, "amount": 1},
        "sender": sender.address, "type": "transfer",
    }  # fmt: skip
    raw = codec.encode({**body, "sig": signer.sign(signing_bytes("tx", body))})
    return decode_transaction(raw, PARAMS.max_tx_bytes)


def test_stateless_checks_apply_inside_blocks(chain: Chain) -> None:
    forged = _forged(ALICE, OUTSIDER)
    built = block_1(chain, [forged])  # the proposer side trusts admission
    assert built.transactions == (forged,)
    with pytest.raises(InvalidBlock, match="bad_signature"):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, built.block)
    # a caller that already verified this signature may skip it
    skipped = apply_block(
        chain.base, chain.tip, CHAIN_ID, PARAMS, built.block, signature_known_valid=lambda h: h == forged.hash
    )
    assert skipped.changes == built.changes
    for bad in (
        sign_transaction(ALICE, "marketchain-other", "transfer", {"to": BOB.address, "amount": 1}, 0, 10),
        sign_transaction(ALICE, CHAIN_ID, "bogus", {"name": "x"}, 0, 10),
        transfer(ALICE, BOB, 1, fee=9),
    ):
        block = dataclasses.replace(built.block, txs=(bad.raw,))
        with pytest.raises(InvalidBlock, match="transaction 0"):
            apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, block)


def test_evidence_is_refused_in_this_version(chain: Chain) -> None:
    built = block_1(chain, [])
    with pytest.raises(InvalidBlock, match="evidence"):
        apply_block(chain.base, chain.tip, CHAIN_ID, PARAMS, dataclasses.replace(built.block, evidence=({"x": 1},)))


# --------------------------------------------------------------------------- block 2 and last_commit


def _commit_block(chain: Chain, result: Any) -> ChainTip:
    chain.base.apply(result.changes)
    header = result.block.header
    return ChainTip(header.height, header.hash, header.time, header.state_root)


def test_block_2_with_last_commit(chain: Chain) -> None:
    first = block_1(chain, [transfer(ALICE, BOB, 5)])
    tip_1 = _commit_block(chain, first)
    commit = sign_commit([VALIDATOR], CHAIN_ID, 1, 0, tip_1.block_hash)

    def block_2(last_commit: Any, **overrides: Any) -> Block:
        return build_block(
            chain.base, tip_1, CHAIN_ID, PARAMS, VALIDATOR.address, BLOCK_TIME + 1,
            [transfer(ALICE, BOB, 6, nonce=1)], last_commit, **overrides,
        ).block  # fmt: skip

    good = block_2(commit)
    result = apply_block(chain.base, tip_1, CHAIN_ID, PARAMS, good)
    assert [r.ok for r in result.receipts] == [True]
    assert good.header.last_commit_hash == hashlib.sha256(commit.encode()).digest()
    assert good.header.prev_hash == first.block.hash
    with pytest.raises(InvalidBlock, match="last_commit is missing"):
        apply_block(chain.base, tip_1, CHAIN_ID, PARAMS, block_2(None))
    other_block = sign_commit([VALIDATOR], CHAIN_ID, 1, 0, b"\x99" * 32)
    with pytest.raises(InvalidBlock, match="not for the parent"):
        apply_block(chain.base, tip_1, CHAIN_ID, PARAMS, block_2(other_block))
    other_height = dataclasses.replace(commit, height=2)
    with pytest.raises(InvalidBlock, match="last_commit.height"):
        apply_block(chain.base, tip_1, CHAIN_ID, PARAMS, block_2(other_height))
    other_round = sign_commit([VALIDATOR], CHAIN_ID, 1, 1, tip_1.block_hash)
    mismatched = dataclasses.replace(good, last_commit=other_round)
    with pytest.raises(InvalidBlock, match="last_commit_hash"):
        apply_block(chain.base, tip_1, CHAIN_ID, PARAMS, mismatched)
    # replaying block 1 on top of block 1 fails
    with pytest.raises(InvalidBlock, match="height"):
        apply_block(chain.base, tip_1, CHAIN_ID, PARAMS, first.block)


# --------------------------------------------------------------------------- conservation (R17)

FUNDED = (ALICE, BOB, CAROL)
RECIPIENTS = (ALICE, BOB, CAROL, VALIDATOR, OUTSIDER)

transfers = st.tuples(
    st.integers(min_value=0, max_value=len(FUNDED) - 1),
    st.integers(min_value=0, max_value=len(RECIPIENTS) - 1),
    st.one_of(st.integers(min_value=1, max_value=400), st.integers(min_value=1, max_value=2_000_000)),
    st.integers(min_value=10, max_value=40),
)
blocks = st.lists(st.lists(transfers, max_size=6), min_size=1, max_size=4)


def total_balance(reader: MemoryStateReader) -> int:
    return sum(codec.decode(value)["balance"] for _, value in reader.scan(ACCOUNT, ACCOUNT[:-1] + b"b"))


@settings(max_examples=100, deadline=None)
@given(blocks)
def test_transfers_conserve_the_supply(block_plans: list[list[tuple[int, int, int, int]]]) -> None:
    genesis = make_genesis()
    tip, changes = genesis_changes(genesis)
    base = MemoryStateReader(changes)
    supply = genesis.total_supply()
    assert supply == ALICE_FUNDS + BOB_FUNDS + CAROL_FUNDS + VALIDATOR_FUNDS
    assert total_balance(base) == supply
    included_per_sender = dict.fromkeys((k.address for k in FUNDED), 0)
    commit: Commit | None = None
    for offset, plan in enumerate(block_plans, start=1):
        nonces = {k.address: account(base, k).nonce for k in FUNDED}
        candidates = []
        for sender_index, recipient_index, amount, fee in plan:
            sender = FUNDED[sender_index]
            candidates.append(transfer(sender, RECIPIENTS[recipient_index], amount, nonces[sender.address], fee))
            nonces[sender.address] += 1
        time = GENESIS_TIME + offset * 1_000
        built = build_block(base, tip, CHAIN_ID, PARAMS, VALIDATOR.address, time, candidates, commit)
        applied = apply_block(base, tip, CHAIN_ID, PARAMS, built.block)
        assert applied.changes == built.changes
        assert all(r.ok or r.code == "insufficient_funds" for r in applied.receipts)
        for tx in applied.transactions:
            included_per_sender[tx.sender] += 1
        base.apply(applied.changes)
        header = built.block.header
        tip = ChainTip(header.height, header.hash, header.time, header.state_root)
        commit = sign_commit([VALIDATOR], CHAIN_ID, header.height, 0, header.hash)
        assert total_balance(base) == supply
    for sender in FUNDED:
        assert account(base, sender).nonce == included_per_sender[sender.address]
