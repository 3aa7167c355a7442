"""Executing transactions: transfers and role changes, receipts, rollback of a failed
rule, fees and nonces (PROTOCOL R11, R12), and supply conservation over random blocks (R17)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.commit import sign_commit
from marketplace_tx.chain.block import Commit
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.accounts import (
    Account,
    has_role,
    role_record,
    store_account,
)
from marketplace_tx.rules.execution import execute_transaction
from marketplace_tx.rules.state import MemoryStateReader, State
from marketplace_tx.rules.state_keys import ACCOUNT, account_key
from marketplace_tx.rules.state_transition import (
    ChainTip,
    apply_block,
    build_block,
    genesis_changes,
)
from tests.unit.marketplace_tx.execution_fixtures import (
    ALICE,
    ALICE_FUNDS,
    BOB,
    BOB_FUNDS,
    CAROL,
    CAROL_FUNDS,
    CHAIN_ID,
    GENESIS_TIME,
    OUTSIDER,
    PARAMS,
    UINT64_MAX,
    VALIDATOR,
    VALIDATOR_FUNDS,
    Chain,
    account,
    context,
    execute,
    grant,
    make_genesis,
    revoke,
    transfer,
)

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
        base.apply(applied.changes, applied.tree)
        header = built.block.header
        tip = ChainTip(header.height, header.hash, header.time, header.state_root)
        commit = sign_commit([VALIDATOR], CHAIN_ID, header.height, 0, header.hash)
        assert total_balance(base) == supply
    for sender in FUNDED:
        assert account(base, sender).nonce == included_per_sender[sender.address]
