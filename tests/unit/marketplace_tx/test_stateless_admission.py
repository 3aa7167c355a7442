"""The stateless admission checks and their order (PROTOCOL R10, R12): chain, type,
payload fields, fee and signature."""

from __future__ import annotations

import json
from typing import Any

import pytest

from marketplace_tx.chain.params import Params
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import AdmissionError, RuleError
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import check_payload, payload_from_json
from tests.unit.marketplace_tx.transaction_fixtures import (
    ALICE,
    BOB,
    CHAIN_ID,
    PARAMS,
    admission_code,
    raw_tx,
    signed_map,
    transfer_payload,
)

# --------------------------------------------------------------------------- stateless admission


def test_valid_transactions_pass_admission() -> None:
    for tx_type, payload in [
        ("transfer", transfer_payload()),
        ("transfer", transfer_payload(memo="")),
        ("role_grant", {"account": BOB.address, "role": "carrier", "evidence_hash": b"\x01" * 32}),
        ("role_revoke", {"account": BOB.address, "role": "carrier"}),
    ]:
        raw = raw_tx(tx_type=tx_type, payload=payload)
        tx = check_stateless(raw, CHAIN_ID, PARAMS)
        assert tx.type == tx_type and tx.raw == raw


def test_wrong_chain() -> None:
    with pytest.raises(AdmissionError) as error:
        check_stateless(raw_tx(chain_id="marketchain-main"), CHAIN_ID, PARAMS)
    assert error.value.code == "wrong_chain"
    assert "chain_id" in error.value.message


@pytest.mark.parametrize(
    ("tx_type", "payload"),
    [
        ("bogus", {}),
        ("", {}),
        ("Transfer", transfer_payload()),
    ],
)
def test_unknown_type(tx_type: str, payload: dict[str, Any]) -> None:
    assert tx_type not in HANDLERS
    with pytest.raises(AdmissionError) as error:
        check_stateless(raw_tx(tx_type=tx_type, payload=payload), CHAIN_ID, PARAMS)
    assert error.value.code == "unknown_type"
    assert "type" in error.value.message


INVALID_PAYLOADS = [
    ("missing to", "transfer", {"amount": 5}, "to"),
    ("missing amount", "transfer", {"to": BOB.address}, "amount"),
    ("unknown key", "transfer", transfer_payload(note="hi"), "note"),
    ("amount zero", "transfer", transfer_payload(amount=0), "amount"),
    ("amount as text", "transfer", transfer_payload(amount="5"), "amount"),
    ("amount as bool", "transfer", transfer_payload(amount=True), "amount"),
    ("amount negative", "transfer", transfer_payload(amount=-5), "amount"),
    ("to as hex text", "transfer", transfer_payload(to=BOB.address.hex()), "to"),
    ("to too long", "transfer", transfer_payload(to=BOB.address + b"\x00"), "to"),
    ("to too short", "transfer", transfer_payload(to=BOB.address[:31]), "to"),
    ("memo as bytes", "transfer", transfer_payload(memo=b"hi"), "memo"),
    ("memo 258 UTF-8 bytes in 86 chars", "transfer", transfer_payload(memo="茶" * 86), "memo"),
    ("memo 257 bytes", "transfer", transfer_payload(memo="a" * 257), "memo"),
    ("memo nil", "transfer", transfer_payload(memo=None), "memo"),
    (
        "evidence_hash too long",
        "role_grant",
        {"account": BOB.address, "role": "merchant", "evidence_hash": b"\x01" * 33},
        "evidence_hash",
    ),
    (
        "unknown role",
        "role_grant",
        {"account": BOB.address, "role": "king", "evidence_hash": b"\x01" * 32},
        "role",
    ),
    ("missing role", "role_revoke", {"account": BOB.address}, "role"),
    ("role as bytes", "role_revoke", {"account": BOB.address, "role": b"merchant"}, "role"),
]


@pytest.mark.parametrize(
    ("tx_type", "payload", "field"),
    [case[1:] for case in INVALID_PAYLOADS],
    ids=[case[0] for case in INVALID_PAYLOADS],
)
def test_invalid_field(tx_type: str, payload: dict[str, Any], field: str) -> None:
    with pytest.raises(AdmissionError) as error:
        check_stateless(raw_tx(tx_type=tx_type, payload=payload), CHAIN_ID, PARAMS)
    assert error.value.code == "invalid_field"
    assert f"payload.{field}:" in error.value.message


def test_memo_bound_counts_utf8_bytes() -> None:
    assert admission_code(raw_tx(payload=transfer_payload(memo="茶" * 85 + "a"))) is None  # 256
    assert admission_code(raw_tx(payload=transfer_payload(memo="a" * 256))) is None
    assert admission_code(raw_tx(payload=transfer_payload(memo="茶" * 85 + "ab"))) == "invalid_field"
    assert admission_code(raw_tx(payload=transfer_payload(memo="😀" * 65))) == "invalid_field"  # 260


def test_memo_with_a_lone_surrogate_is_invalid_field() -> None:
    document = '{"to": "' + "01" * 32 + '", "amount": 1, "memo": "\\ud800"}'
    payload = payload_from_json("transfer", json.loads(document))
    assert payload["memo"] == "\ud800"
    with pytest.raises(RuleError) as error:
        check_payload("transfer", payload)
    assert error.value.code == "invalid_field"


def test_empty_optional_list_is_invalid() -> None:
    """No executable type has a list yet, so this goes through the schema directly."""
    shop = {"name": "Tea", "points_bps": 0, "max_redeem_bps": 0}
    check_payload("shop_create", {**shop, "arbiters": [b"\x01" * 32]})
    with pytest.raises(RuleError) as error:
        check_payload("shop_create", {**shop, "arbiters": []})
    assert error.value.code == "invalid_field"
    assert "payload.arbiters" in error.value.message
    with pytest.raises(RuleError, match=r"payload\.tags"):
        check_payload("listing_update", {"listing_id": b"\x01" * 32, "tags": []})


def test_fee_too_low() -> None:
    assert admission_code(raw_tx(fee=PARAMS.min_fee)) is None
    assert admission_code(raw_tx(fee=PARAMS.min_fee - 1)) == "fee_too_low"
    assert admission_code(raw_tx(fee=0)) == "fee_too_low"
    assert admission_code(raw_tx(fee=99), Params(min_fee=100)) == "fee_too_low"


def test_bad_signature_flipped_bit() -> None:
    value = signed_map()
    for bit in (0, 255, 511):
        sig = bytearray(value["sig"])
        sig[bit // 8] ^= 1 << (bit % 8)
        tampered = codec.encode({**value, "sig": bytes(sig)})
        with pytest.raises(AdmissionError) as error:
            check_stateless(tampered, CHAIN_ID, PARAMS)
        assert error.value.code == "bad_signature"
        assert "sig" in error.value.message


def test_bad_signature_other_key() -> None:
    raw = raw_tx(signer=BOB, sender=ALICE.address)
    assert admission_code(raw) == "bad_signature"
    # the same transaction is accepted when signature checking is skipped
    assert check_stateless(raw, CHAIN_ID, PARAMS, verify_signature=False).sender == ALICE.address


def test_bad_signature_changed_payload() -> None:
    value = signed_map()
    value["payload"] = transfer_payload(amount=999_999)
    assert admission_code(codec.encode(value)) == "bad_signature"


def test_all_zero_signature_and_key() -> None:
    raw = codec.encode({**signed_map(), "sig": bytes(64)})
    assert admission_code(raw) == "bad_signature"
    raw = codec.encode({**signed_map(sender=bytes(32)), "sig": bytes(64)})
    assert admission_code(raw) == "bad_signature"


def test_admission_order_follows_the_documented_sequence() -> None:
    """size → malformed → wrong_chain → unknown_type → invalid_field → fee_too_low → bad_signature."""
    bad_everything = dict(chain_id="other", tx_type="bogus", payload={}, fee=0, signer=BOB, sender=ALICE.address)
    assert admission_code(raw_tx(**bad_everything)) == "wrong_chain"
    bad_everything["chain_id"] = CHAIN_ID
    assert admission_code(raw_tx(**bad_everything)) == "unknown_type"
    bad_everything["tx_type"] = "transfer"
    assert admission_code(raw_tx(**bad_everything)) == "invalid_field"
    bad_everything["payload"] = transfer_payload()
    assert admission_code(raw_tx(**bad_everything)) == "fee_too_low"
    bad_everything["fee"] = 10
    assert admission_code(raw_tx(**bad_everything)) == "bad_signature"
