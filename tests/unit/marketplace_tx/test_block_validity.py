"""Building and validating blocks: build and apply agree, size and count limits, every
tampered header or body field is refused, stateless checks inside blocks, block 2 and its
last commit (PROTOCOL R11, R23, R24)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from consensus.commit import sign_commit
from marketplace_tx.chain.block import Block, decode_block
from marketplace_tx.chain.params import BLOCK_ENVELOPE_ALLOWANCE, Params
from marketplace_tx.chain.transaction import Transaction, decode_transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, signing_bytes
from marketplace_tx.primitives.errors import InvalidBlock, InvalidGenesis
from marketplace_tx.primitives.merkle import EMPTY_ROOT, merkle_root
from marketplace_tx.primitives.sparse_merkle import subtree_root
from marketplace_tx.rules.state import MemoryStateReader
from marketplace_tx.rules.state_transition import (
    ChainTip,
    apply_block,
    build_block,
    genesis_changes,
)
from tests.unit.marketplace_tx.execution_fixtures import (
    ALICE,
    BLOCK_TIME,
    BOB,
    CAROL,
    CHAIN_ID,
    GENESIS_TIME,
    OUTSIDER,
    PARAMS,
    VALIDATOR,
    Chain,
    grant,
    make_genesis,
    transfer,
)

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
    after = dict(chain.base.values)
    for key, value in built.changes.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    assert header.state_root == subtree_root(after.items())  # R35: the tree over the whole state
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
    assert built.block.header.state_root == chain.tip.state_root  # R35: same state, same root
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
    chain.base.apply(result.changes, result.tree)
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
