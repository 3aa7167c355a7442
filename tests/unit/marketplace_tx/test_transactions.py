"""Signed transactions, envelope decoding, stateless admission and payload schemas
(PROTOCOL R4, R8, R9, R10, R12, §4)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import nacl.signing
import pytest

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import ENVELOPE_KEYS, decode_transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, signing_bytes
from marketplace_tx.primitives.errors import AdmissionError, RuleError
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import SCHEMAS, FieldSpec, check_payload, payload_from_json

CHAIN_ID = "marketchain-test"
PARAMS = Params()


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


ALICE = key("alice")
BOB = key("bob")


def transfer_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"to": BOB.address, "amount": 1000}
    payload.update(overrides)
    return payload


def signed_map(
    tx_type: str = "transfer",
    payload: dict[str, Any] | None = None,
    *,
    signer: KeyPair = ALICE,
    sender: bytes | None = None,
    chain_id: str = CHAIN_ID,
    nonce: int = 0,
    fee: int = 10,
) -> dict[str, Any]:
    """A full signed transaction map; `sender` may differ from the signer."""
    body = {
        "chain_id": chain_id,
        "fee": fee,
        "nonce": nonce,
        "payload": transfer_payload() if payload is None else payload,
        "sender": signer.address if sender is None else sender,
        "type": tx_type,
    }
    return {**body, "sig": signer.sign(signing_bytes("tx", body))}


def raw_tx(**kwargs: Any) -> bytes:
    return codec.encode(signed_map(**kwargs))


def admission_code(raw: bytes, params: Params = PARAMS) -> str | None:
    try:
        check_stateless(raw, CHAIN_ID, params)
    except AdmissionError as error:
        return error.code
    return None


# --------------------------------------------------------------------------- signing and hashing


def test_sign_transaction_produces_the_r8_envelope() -> None:
    tx = sign_transaction(ALICE, CHAIN_ID, "transfer", transfer_payload(memo="茶"), nonce=3, fee=12)
    unsigned = {
        "chain_id": CHAIN_ID,
        "fee": 12,
        "nonce": 3,
        "payload": {"amount": 1000, "memo": "茶", "to": BOB.address},
        "sender": ALICE.address,
        "type": "transfer",
    }
    expected_signing_bytes = b"marketchain/tx/v1\x00" + codec.encode(unsigned)
    assert tx.signing_bytes() == expected_signing_bytes
    assert tx.unsigned_map() == unsigned
    # the signature checks with libsodium directly, over exactly those bytes
    nacl.signing.VerifyKey(ALICE.address).verify(expected_signing_bytes, tx.sig)
    assert tx.raw == codec.encode({**unsigned, "sig": tx.sig})
    assert list(codec.decode(tx.raw)) == list(ENVELOPE_KEYS)
    assert tx.hash == hashlib.sha256(tx.raw).digest()
    assert tx.to_map() == {**unsigned, "sig": tx.sig}
    assert tx.has_valid_signature()


def test_signature_is_deterministic_and_domain_separated() -> None:
    first = sign_transaction(ALICE, CHAIN_ID, "transfer", transfer_payload(), 0, 10)
    second = sign_transaction(ALICE, CHAIN_ID, "transfer", transfer_payload(), 0, 10)
    assert first.sig == second.sig and first.hash == second.hash
    body = first.unsigned_map()
    vote_key = nacl.signing.VerifyKey(ALICE.address)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        vote_key.verify(signing_bytes("vote", body), first.sig)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        vote_key.verify(codec.encode(body), first.sig)


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": 1},
        {"fee": 11},
        {"chain_id": "marketchain-other"},
        {"payload": transfer_payload(amount=1001)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_every_field_changes_the_hash_and_signature(change: dict[str, Any]) -> None:
    arguments = {"chain_id": CHAIN_ID, "payload": transfer_payload(), "nonce": 0, "fee": 10}
    base = sign_transaction(ALICE, arguments["chain_id"], "transfer", arguments["payload"], 0, 10)
    arguments.update(change)
    other = sign_transaction(
        ALICE, arguments["chain_id"], "transfer", arguments["payload"], arguments["nonce"], arguments["fee"]
    )
    assert other.hash != base.hash
    assert other.sig != base.sig


def test_decode_transaction_round_trip() -> None:
    tx = sign_transaction(ALICE, CHAIN_ID, "role_grant", {
        "account": BOB.address, "role": "merchant", "evidence_hash": b"\x07" * 32,
    }, nonce=9, fee=25)
    decoded = decode_transaction(tx.raw, PARAMS.max_tx_bytes)
    assert decoded == tx
    assert decoded.has_valid_signature()


def test_has_valid_signature_detects_changes_after_signing() -> None:
    value = signed_map()
    value["nonce"] = 1
    tx = decode_transaction(codec.encode(value), PARAMS.max_tx_bytes)
    assert not tx.has_valid_signature()


# --------------------------------------------------------------------------- envelope errors


@pytest.mark.parametrize("missing", ENVELOPE_KEYS)
def test_missing_envelope_field_is_malformed(missing: str) -> None:
    value = signed_map()
    del value[missing]
    with pytest.raises(AdmissionError) as error:
        decode_transaction(codec.encode(value), PARAMS.max_tx_bytes)
    assert error.value.code == "malformed"
    assert missing in error.value.message


@pytest.mark.parametrize("extra", ["extra", "hash", "Sig", ""])
def test_extra_envelope_field_is_malformed(extra: str) -> None:
    value = {**signed_map(), extra: 1}
    with pytest.raises(AdmissionError) as error:
        decode_transaction(codec.encode(value), PARAMS.max_tx_bytes)
    assert error.value.code == "malformed"
    assert f"unknown field {extra}" in error.value.message


MISTYPED = [
    ("chain_id", CHAIN_ID.encode()),
    ("chain_id", 5),
    ("fee", -1),
    ("fee", "10"),
    ("fee", True),
    ("fee", None),
    ("nonce", -1),
    ("nonce", b"\x00"),
    ("nonce", False),
    ("payload", [1]),
    ("payload", b""),
    ("payload", None),
    ("sender", b"\x01" * 31),
    ("sender", b"\x01" * 33),
    ("sender", "01" * 32),
    ("sig", b"\x01" * 63),
    ("sig", b"\x01" * 65),
    ("sig", "00" * 64),
    ("type", b"transfer"),
    ("type", ["transfer"]),
]


@pytest.mark.parametrize(("name", "value"), MISTYPED, ids=[f"{n}={v!r}"[:40] for n, v in MISTYPED])
def test_mistyped_envelope_field_is_malformed(name: str, value: Any) -> None:
    tx_map = {**signed_map(), name: value}
    with pytest.raises(AdmissionError) as error:
        decode_transaction(codec.encode(tx_map), PARAMS.max_tx_bytes)
    assert error.value.code == "malformed"
    assert error.value.message.startswith(name)


@pytest.mark.parametrize("value", [[], 5, "tx", b"tx", None])
def test_a_transaction_is_a_map(value: Any) -> None:
    with pytest.raises(AdmissionError) as error:
        decode_transaction(codec.encode(value), PARAMS.max_tx_bytes)
    assert error.value.code == "malformed"


def test_non_canonical_bytes_are_malformed() -> None:
    raw = raw_tx()
    # fee 10 is the positive fixint 0x0a right after the key "fee"; rewrite it as uint8
    non_canonical = raw.replace(b"\xa3fee\x0a", b"\xa3fee\xcc\x0a", 1)
    assert non_canonical != raw
    with pytest.raises(AdmissionError) as error:
        decode_transaction(non_canonical, PARAMS.max_tx_bytes)
    assert error.value.code == "malformed"
    with pytest.raises(AdmissionError) as error:
        decode_transaction(raw + b"\x00", PARAMS.max_tx_bytes)
    assert error.value.code == "malformed"


def test_size_limit_is_inclusive_and_checked_first() -> None:
    raw = raw_tx()
    assert decode_transaction(raw, len(raw)).raw == raw
    with pytest.raises(AdmissionError) as error:
        decode_transaction(raw, len(raw) - 1)
    assert error.value.code == "tx_too_large"
    assert str(len(raw)) in error.value.message
    # size wins over any other problem
    with pytest.raises(AdmissionError) as error:
        decode_transaction(b"\xc1" * 300, 256)
    assert error.value.code == "tx_too_large"


def test_oversize_transaction_through_admission() -> None:
    params = Params(max_tx_bytes=256)
    small = raw_tx()
    assert admission_code(small, params) is None
    big = raw_tx(payload=transfer_payload(memo="m" * 200))
    assert len(big) > 256
    assert admission_code(big, params) == "tx_too_large"
    assert admission_code(big) is None  # fine under the default 16384


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


# --------------------------------------------------------------------------- every schema


def _minimal_value(spec: FieldSpec) -> Any:
    if spec.kind == "bin32":
        return b"\x01" * 32
    if spec.kind == "bin":
        return b""
    if spec.kind in ("uint", "int"):
        return max(spec.minimum, 0) if spec.kind == "uint" else 0
    if spec.kind == "bool":
        return False
    if spec.kind == "str":
        if spec.choices:
            return spec.choices[0]
        return "a" * max(spec.minimum, 0)
    if spec.kind == "list":
        assert spec.item is not None
        return [_minimal_value(spec.item)]
    raise AssertionError(spec.kind)


def minimal_payload(tx_type: str) -> dict[str, Any]:
    schema = SCHEMAS[tx_type]
    payload = {name: _minimal_value(spec) for name, spec in schema.fields.items() if spec.required}
    if schema.needs_one_of:
        first = schema.needs_one_of[0]
        payload[first] = _minimal_value(schema.fields[first])
    return payload


def required_keys(tx_type: str) -> list[str]:
    return [name for name, spec in SCHEMAS[tx_type].fields.items() if spec.required]


def test_schemas_cover_protocol_section_4() -> None:
    assert set(SCHEMAS) == {
        "transfer", "role_grant", "role_revoke", "validator_vote",
        "shop_create", "shop_update", "listing_create", "listing_update",
        "order_place", "order_accept", "order_reject", "order_cancel", "order_ship",
        "shipment_update", "order_confirm", "return_request", "order_refund",
        "dispute_open", "dispute_resolve", "review_submit", "review_reply",
        "item_register", "item_event", "item_transfer",
    }  # fmt: skip
    assert set(HANDLERS) <= set(SCHEMAS)


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_minimal_payload_passes(tx_type: str) -> None:
    check_payload(tx_type, minimal_payload(tx_type))


@pytest.mark.parametrize(
    ("tx_type", "key"),
    [(tx_type, name) for tx_type in sorted(SCHEMAS) for name in required_keys(tx_type)],
)
def test_dropping_a_required_key_names_it(tx_type: str, key: str) -> None:
    payload = minimal_payload(tx_type)
    del payload[key]
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, payload)
    assert error.value.code == "invalid_field"
    assert error.value.message.startswith(f"payload.{key}:")


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_unknown_key_is_named(tx_type: str) -> None:
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, {**minimal_payload(tx_type), "zz_unknown": 1})
    assert error.value.code == "invalid_field"
    assert "payload.zz_unknown" in error.value.message


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_payload_must_be_a_map(tx_type: str) -> None:
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, [])
    assert error.value.code == "invalid_field"


@pytest.mark.parametrize("tx_type", ["shop_update", "listing_update"])
def test_updates_need_at_least_one_change(tx_type: str) -> None:
    payload = minimal_payload(tx_type)
    for name in SCHEMAS[tx_type].needs_one_of:
        payload.pop(name, None)
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, payload)
    assert error.value.code == "invalid_field"


@pytest.mark.parametrize(
    ("tx_type", "field", "value"),
    [
        ("shop_create", "name", ""),
        ("shop_create", "name", "n" * 65),
        ("shop_create", "points_bps", 10001),
        ("shop_create", "arbiters", [b"\x01" * 32] * 9),
        ("shop_create", "arbiters", [b"\x01" * 31]),
        ("listing_create", "price", 0),
        ("listing_create", "item_ids", ["bad id"]),
        ("listing_create", "item_ids", ["a" * 65]),
        ("listing_create", "tags", ["t" * 33]),
        ("listing_update", "stock_delta", 2**63),
        ("order_place", "quantity", 0),
        ("order_place", "shipping", b"\x00" * 1025),
        ("order_place", "shipping", "text"),
        ("shipment_update", "status", "lost"),
        ("review_submit", "rating", 6),
        ("review_submit", "rating", 0),
        ("item_event", "kind", "sold"),
        ("item_event", "kind", "registered"),
        ("item_transfer", "custody_only", 1),
        ("validator_vote", "action", "promote"),
    ],
)
def test_bounds(tx_type: str, field: str, value: Any) -> None:
    with pytest.raises(RuleError) as error:
        check_payload(tx_type, {**minimal_payload(tx_type), field: value})
    assert error.value.code == "invalid_field"
    assert f"payload.{field}" in error.value.message


@pytest.mark.parametrize(
    ("tx_type", "field", "value"),
    [
        ("shop_create", "name", "n" * 64),
        ("shop_create", "points_bps", 10000),
        ("shop_create", "arbiters", [b"\x01" * 32] * 8),
        ("listing_create", "item_ids", ["Ab0._:-" * 9 + "x"]),
        ("listing_update", "stock_delta", -(2**63)),
        ("order_place", "shipping", b"\x00" * 1024),
        ("review_submit", "rating", 5),
        ("item_event", "kind", "inspected"),
    ],
)
def test_bounds_are_inclusive(tx_type: str, field: str, value: Any) -> None:
    check_payload(tx_type, {**minimal_payload(tx_type), field: value})


def test_payload_from_json_converts_hex_by_schema() -> None:
    converted = payload_from_json(
        "shop_create",
        {"name": "Tea", "points_bps": 1, "max_redeem_bps": 2, "arbiters": ["ab" * 32], "extra": "cd"},
    )
    assert converted == {
        "name": "Tea",
        "points_bps": 1,
        "max_redeem_bps": 2,
        "arbiters": [b"\xab" * 32],
        "extra": "cd",  # unknown keys are kept as they are, for check_payload to report
    }
    with pytest.raises(RuleError) as error:
        payload_from_json("transfer", {"to": "zz" * 32, "amount": 1})
    assert error.value.code == "invalid_field"
    assert "payload.to" in error.value.message
