"""Signed transactions: signing and hashing, and the envelope's decoding errors
(PROTOCOL R4, R8, R9, R10 `malformed` and `tx_too_large`)."""

from __future__ import annotations

import hashlib
from typing import Any

import nacl.signing
import pytest

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import ENVELOPE_KEYS, decode_transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import signing_bytes
from marketplace_tx.primitives.errors import AdmissionError
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
