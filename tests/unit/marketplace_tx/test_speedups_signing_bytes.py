"""Signing bytes cut out of a transaction's raw bytes equal the re-encoded ones
(speedups.unsigned_bytes_from_signed; PROTOCOL R1, R4, R8).

When `raw_matches_fields` is set (only by `decode_transaction` and `sign_transaction`),
`Transaction.signing_bytes` takes the unsigned map's bytes from
`speedups.unsigned_bytes_from_signed`, which cuts them out of the canonical `raw`
(fixmap header 7 → 6, the 70-byte `sig` entry removed), instead of re-encoding the
fields (the plain version: tag + `codec.encode(tx.unsigned_map())`, R4, R8). These
tests check that the cut bytes equal the re-encoded ones for every transaction type of
§4 and for hypothesis-generated envelopes (long and non-ASCII `type` and `chain_id`,
any canonical payload); that the cut is really taken; that `dataclasses.replace`
resets the flag so the signing bytes follow the changed fields; that a tampered
`raw` does not verify; and that the vectors of protocol-v1.json give the same
signing bytes through both paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace_tx import speedups
from marketplace_tx.chain import transaction as transaction_module
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, decode_transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, signing_bytes, verify_signature
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.schema import (
    INT64_MAX,
    INT64_MIN,
    ITEM_ID_PATTERN,
    SCHEMAS,
    UINT64_MAX,
    FieldSpec,
    payload_from_json,
)

CHAIN_ID = "marketchain-fast-path"
PARAMS = Params()
MAX_TX_BYTES = 1 << 20
"""Generous decode limit: these tests are about bytes, not the size rule."""
ALICE = KeyPair.from_seed(hashlib.sha256(b"fast-path alice").digest())
BOB = KeyPair.from_seed(hashlib.sha256(b"fast-path bob").digest())
from tests.paths import VECTORS  # noqa: E402

PROTOCOL_VECTORS = json.loads((VECTORS / "protocol-v1.json").read_text(encoding="utf-8"))
EXTRA_VECTORS = json.loads((VECTORS / "marketchain-v2-extra.json").read_text(encoding="utf-8"))


def plain_signing_bytes(tx: Transaction) -> bytes:
    """The signing bytes of R4/R8 from the fields alone: tag + canonical(map without sig)."""
    return signing_bytes("tx", tx.unsigned_map())


def fast_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the re-encoding path of `Transaction.signing_bytes` fail loudly."""

    def refuse(kind: str, value: Any) -> bytes:
        raise AssertionError("signing bytes were re-encoded instead of cut out of raw")

    monkeypatch.setattr(transaction_module, "signing_bytes", refuse)


def cut_signing_bytes(tx: Transaction) -> bytes:
    """`tx.signing_bytes()`, failing if it re-encodes instead of cutting `raw`."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast_path_only(monkeypatch)
        return tx.signing_bytes()


def assert_both_paths_agree(tx: Transaction) -> bytes:
    """The fast path is on and taken, gives the re-encoded bytes, and the signature verifies."""
    assert tx.raw_matches_fields
    fast = cut_signing_bytes(tx)
    assert fast == plain_signing_bytes(tx)
    assert speedups.unsigned_bytes_from_signed(tx.raw, tx.sig, tx.type) == codec.encode(tx.unsigned_map())
    assert dataclasses.replace(tx).signing_bytes() == fast  # the copy takes the slow path
    assert verify_signature(tx.sender, fast, tx.sig) and tx.has_valid_signature()
    return fast


# --------------------------------------------------------------------------- strategies


def text_of_utf8_bytes(minimum: int, maximum: int) -> st.SearchStrategy[str]:
    """Text of `minimum`..`maximum` UTF-8 bytes (R1 bounds count bytes), no lone surrogates."""
    characters = st.characters(blacklist_categories=("Cs",))
    return st.text(characters, min_size=minimum, max_size=max(minimum, min(maximum // 4, 40))).filter(
        lambda value: minimum <= len(value.encode()) <= maximum
    )


def value_for(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values that satisfy one payload field's schema."""
    if spec.kind == "bin32":
        return st.binary(min_size=32, max_size=32)
    if spec.kind == "bin":
        return st.binary(min_size=spec.minimum, max_size=max(spec.minimum, min(spec.maximum or 64, 64)))
    if spec.kind == "uint":
        return st.integers(spec.minimum, spec.maximum if spec.maximum is not None else UINT64_MAX)
    if spec.kind == "int":
        return st.integers(INT64_MIN, INT64_MAX)
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind == "list":
        assert spec.item is not None
        return st.lists(value_for(spec.item), min_size=1, max_size=min(spec.maximum or 4, 4))
    assert spec.kind == "str"
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.pattern is ITEM_ID_PATTERN:
        return st.from_regex(ITEM_ID_PATTERN, fullmatch=True)
    maximum = spec.maximum if spec.maximum is not None else 256
    return text_of_utf8_bytes(spec.minimum, maximum).filter(lambda value: value not in spec.excluded)


def payload_for(tx_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads that pass `check_payload(tx_type, ...)` (§4, R10)."""
    schema = SCHEMAS[tx_type]
    required = {name: value_for(spec) for name, spec in schema.fields.items() if spec.required}
    optional = {name: value_for(spec) for name, spec in schema.fields.items() if not spec.required}
    payloads = st.fixed_dictionaries(required, optional=optional)
    if schema.needs_one_of:
        payloads = payloads.filter(lambda payload: any(name in payload for name in schema.needs_one_of))
    return payloads


KEYS = st.binary(min_size=32, max_size=32).map(KeyPair.from_seed)
UINT64 = st.integers(0, UINT64_MAX)

SCHEMA_TRANSACTIONS = st.sampled_from(sorted(SCHEMAS)).flatmap(
    lambda tx_type: st.builds(
        sign_transaction, KEYS, st.just(CHAIN_ID), st.just(tx_type), payload_for(tx_type), UINT64, UINT64
    )
)
"""Valid signed transactions of every type of §4."""

CANONICAL_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(INT64_MIN, UINT64_MAX) | st.binary(max_size=40)
    | text_of_utf8_bytes(0, 80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text_of_utf8_bytes(0, 12), children, max_size=4),
    max_leaves=12,
)
ANY_ENVELOPES = st.builds(
    sign_transaction,
    KEYS,
    text_of_utf8_bytes(0, 300),
    text_of_utf8_bytes(0, 300) | st.text("ab茶", max_size=300),  # str8/str16 headers when long
    st.dictionaries(text_of_utf8_bytes(0, 12), CANONICAL_VALUES, max_size=5),
    UINT64,
    UINT64,
)
"""Signed envelopes with any text `chain_id` and `type` and any canonical payload (R8)."""


# --------------------------------------------------------------------------- fast = slow


def value_of_every_kind(spec: FieldSpec) -> Any:
    """A valid value of every field, optional ones included (a large map)."""
    values = {"bin32": b"\x05" * 32, "bin": b"\x00\xff" * max(1, (spec.minimum + 1) // 2), "int": -(2**40),
              "bool": True}
    if spec.kind in values:
        return values[spec.kind]
    if spec.kind == "uint":
        return max(spec.minimum, min(spec.maximum or UINT64_MAX, 2**33))
    if spec.kind == "list":
        assert spec.item is not None
        return [value_of_every_kind(spec.item)] * 2
    if spec.choices:
        return spec.choices[-1]
    if spec.pattern is not None:
        return "item-1.a:b_c"
    return "茶" * max(1, spec.minimum)  # 3 UTF-8 bytes a character


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_every_type_gives_the_same_bytes_through_both_paths(tx_type: str) -> None:
    payload = {name: value_of_every_kind(spec) for name, spec in SCHEMAS[tx_type].fields.items()}
    signed = sign_transaction(ALICE, CHAIN_ID, tx_type, payload, nonce=7, fee=10)
    decoded = decode_transaction(signed.raw, MAX_TX_BYTES)
    assert assert_both_paths_agree(signed) == assert_both_paths_agree(decoded)
    assert check_stateless(signed.raw, CHAIN_ID, PARAMS) == decoded  # the payload is valid (R10)


@pytest.mark.parametrize("tx_type", sorted(SCHEMAS))
def test_the_fast_path_is_taken_for_every_type(tx_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = {name: value_of_every_kind(spec) for name, spec in SCHEMAS[tx_type].fields.items()}
    signed = sign_transaction(BOB, CHAIN_ID, tx_type, payload, nonce=0, fee=1)
    expected = plain_signing_bytes(signed)
    fast_path_only(monkeypatch)
    decoded = decode_transaction(signed.raw, MAX_TX_BYTES)
    assert signed.signing_bytes() == decoded.signing_bytes() == expected
    assert decoded.has_valid_signature()
    with pytest.raises(AssertionError, match="re-encoded"):
        dataclasses.replace(decoded).signing_bytes()  # without the flag: the slow path


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(SCHEMA_TRANSACTIONS)
def test_hypothesis_valid_transactions_give_the_same_bytes(signed: Transaction) -> None:
    decoded = decode_transaction(signed.raw, MAX_TX_BYTES)
    assert assert_both_paths_agree(signed) == assert_both_paths_agree(decoded)
    assert decoded == signed


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(ANY_ENVELOPES)
def test_hypothesis_any_envelope_gives_the_same_bytes(signed: Transaction) -> None:
    decoded = decode_transaction(signed.raw, MAX_TX_BYTES)
    assert assert_both_paths_agree(signed) == assert_both_paths_agree(decoded)
    assert decoded.signing_bytes() == b"marketchain/tx/v1\x00" + codec.encode(decoded.unsigned_map())


@pytest.mark.parametrize("type_bytes", [0, 1, 31, 32, 255, 256, 65535, 65536])
def test_every_string_header_of_type_gives_the_same_bytes(type_bytes: int) -> None:
    """The cut is placed by the packed length of `type`: fixstr, str8, str16, str32 (R1)."""
    signed = sign_transaction(ALICE, "c" * type_bytes, "t" * type_bytes, {"k": b"v"}, 1, 2)
    decoded = decode_transaction(signed.raw, MAX_TX_BYTES)
    assert assert_both_paths_agree(signed) == assert_both_paths_agree(decoded)


# --------------------------------------------------------------------------- dataclasses.replace


def base_transfer() -> Transaction:
    return sign_transaction(ALICE, CHAIN_ID, "transfer", {"to": BOB.address, "amount": 5, "memo": "m"}, 3, 12)


@pytest.mark.parametrize(
    "changes",
    [
        {"chain_id": "marketchain-other"},
        {"fee": 13},
        {"nonce": 4},
        {"payload": {"to": BOB.address, "amount": 6, "memo": "m"}},
        {"sender": BOB.address},
        {"type": "role_revoke"},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_replace_resets_the_flag_and_bytes_follow_the_fields(changes: dict[str, Any]) -> None:
    original = base_transfer()
    changed = dataclasses.replace(original, **changes)
    assert original.raw_matches_fields and not changed.raw_matches_fields
    assert changed.raw == original.raw  # raw is stale now: the fields must win
    assert changed.signing_bytes() == plain_signing_bytes(changed) != original.signing_bytes()
    assert not changed.has_valid_signature()


def test_replace_of_sig_or_raw_alone_keeps_the_field_bytes() -> None:
    original = base_transfer()
    other_sig = dataclasses.replace(original, sig=bytes(64))
    assert not other_sig.raw_matches_fields
    assert other_sig.signing_bytes() == original.signing_bytes()
    assert not other_sig.has_valid_signature()
    other_raw = dataclasses.replace(original, raw=sign_transaction(BOB, "x", "y", {}, 0, 0).raw)
    assert other_raw.signing_bytes() == original.signing_bytes() and other_raw.has_valid_signature()


def test_the_flag_cannot_be_set_through_replace_or_the_constructor() -> None:
    original = base_transfer()
    with pytest.raises(ValueError):
        dataclasses.replace(original, raw_matches_fields=True)
    with pytest.raises(TypeError):
        Transaction(**{name: getattr(original, name) for name in ("chain_id", "fee", "nonce", "payload",
                                                                   "sender", "type", "sig", "raw", "hash")},
                    raw_matches_fields=True)
    assert dataclasses.replace(original) == original  # the flag takes no part in equality


# --------------------------------------------------------------------------- tampering


def test_a_tampered_payload_in_raw_does_not_verify() -> None:
    original = base_transfer()
    position = original.raw.index(b"\xa4memo\xa1m") + 6
    tampered_raw = original.raw[:position] + b"n" + original.raw[position + 1:]
    tampered = decode_transaction(tampered_raw, MAX_TX_BYTES)  # still canonical
    assert tampered.payload["memo"] == "n" and tampered.raw_matches_fields
    assert assert_bytes_of_tampered(tampered) != original.signing_bytes()


@pytest.mark.parametrize("field", ["chain_id", "fee", "nonce", "sender", "type"])
def test_a_tampered_envelope_field_in_raw_does_not_verify(field: str) -> None:
    original = base_transfer()
    replacement = {"chain_id": "marketchain-fast-patH", "fee": 13, "nonce": 2,
                   "sender": BOB.address, "type": "transfeR"}[field]
    tampered_raw = codec.encode({**original.to_map(), field: replacement})
    assert len(tampered_raw) == len(original.raw)  # a same-length edit of the bytes
    tampered = decode_transaction(tampered_raw, MAX_TX_BYTES)
    assert assert_bytes_of_tampered(tampered) != original.signing_bytes()


def assert_bytes_of_tampered(tampered: Transaction) -> bytes:
    """Both paths agree on the tampered fields, and the old signature fails them."""
    assert tampered.signing_bytes() == plain_signing_bytes(tampered)
    assert not tampered.has_valid_signature()
    return tampered.signing_bytes()


def test_a_tampered_sig_in_raw_does_not_verify() -> None:
    original = base_transfer()
    position = original.raw.index(original.sig) + 10
    tampered_raw = original.raw[:position] + bytes([original.raw[position] ^ 1]) + original.raw[position + 1:]
    tampered = decode_transaction(tampered_raw, MAX_TX_BYTES)
    assert tampered.raw_matches_fields and tampered.signing_bytes() == original.signing_bytes()
    assert not tampered.has_valid_signature()


def test_the_cut_reads_raw_and_falls_back_when_raw_does_not_hold_the_sig() -> None:
    """The fast path takes its bytes from `raw` (a raw swapped behind the flag's back is
    what gets verified), and re-encodes when `raw` does not carry this `sig` at the cut."""
    original = base_transfer()
    other = sign_transaction(ALICE, CHAIN_ID, "transfer", {"to": BOB.address, "amount": 5, "memo": "n"}, 3, 12)
    swapped = decode_transaction(original.raw, MAX_TX_BYTES)
    object.__setattr__(swapped, "raw", other.raw.replace(other.sig, original.sig))
    assert swapped.signing_bytes() == other.signing_bytes() and not swapped.has_valid_signature()
    foreign = decode_transaction(original.raw, MAX_TX_BYTES)
    object.__setattr__(foreign, "raw", other.raw)  # holds another sig: the guard re-encodes
    assert foreign.signing_bytes() == original.signing_bytes() and foreign.has_valid_signature()


# --------------------------------------------------------------------------- vectors


TRANSACTION_VECTORS = [*PROTOCOL_VECTORS["transactions"], *EXTRA_VECTORS["transactions"]]


@pytest.mark.parametrize(
    "vector",
    TRANSACTION_VECTORS,
    ids=[f"{index}-{vector['tx']['type']}" for index, vector in enumerate(TRANSACTION_VECTORS)],
)
def test_vectors_give_the_same_signing_bytes_through_both_paths(vector: dict[str, Any]) -> None:
    expected = bytes.fromhex(vector["signing_bytes"])
    decoded = decode_transaction(bytes.fromhex(vector["canonical"]), PARAMS.max_tx_bytes)
    assert decoded.signing_bytes() == expected  # fast path
    assert dataclasses.replace(decoded).signing_bytes() == expected  # slow path
    fields = vector["tx"]
    key = KeyPair.from_seed(bytes.fromhex(vector["seed"]))
    payload = payload_from_json(fields["type"], fields["payload"])
    signed = sign_transaction(key, fields["chain_id"], fields["type"], payload, fields["nonce"], fields["fee"])
    assert signed.signing_bytes() == plain_signing_bytes(signed) == expected
    assert signed.sig.hex() == vector["sig"] and decoded.has_valid_signature()


def test_the_protocol_vectors_are_all_used() -> None:
    assert len(PROTOCOL_VECTORS["transactions"]) == 3
    assert {vector["tx"]["type"] for vector in PROTOCOL_VECTORS["transactions"]} <= set(SCHEMAS)
