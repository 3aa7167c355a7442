"""Signed transactions: the envelope, signing, hashing and decoding (PROTOCOL R8, R9)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from marketplace_tx import speedups
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, domain_tag, signing_bytes, verify_signature
from marketplace_tx.primitives.errors import AdmissionError, CodecError
from marketplace_tx.primitives.limits import UINT64_MAX

ENVELOPE_KEYS = ("chain_id", "fee", "nonce", "payload", "sender", "sig", "type")
"""The keys of a signed transaction map, in canonical order (R8)."""


_TX_TAG = domain_tag("tx")


@dataclass(frozen=True)
class Transaction:
    """A signed transaction as it travels and is stored (R8)."""

    chain_id: str
    """The chain this transaction is for; any other chain rejects it."""
    fee: int
    """µMKT paid to the block's proposer, whatever the rule's outcome (R11)."""
    nonce: int
    """The sender's sequence number; the first is 0 (R9)."""
    payload: dict[str, Any]
    """Type-specific fields, checked against `schema.SCHEMAS` (R10)."""
    sender: bytes
    """The signer's 32-byte address."""
    type: str
    """The transaction type of §4."""
    sig: bytes
    """Ed25519 signature (kind `tx`) over the map without `sig` (R8)."""
    raw: bytes = field(repr=False)
    """The canonical msgpack bytes of the full signed map."""
    hash: bytes
    """SHA-256 of `raw`: the transaction id (R9)."""
    raw_matches_fields: bool = field(default=False, init=False, repr=False, compare=False)
    """True when `raw` is known to be the canonical encoding of exactly these fields
    (set only by `decode_transaction` and `sign_transaction`; a copy made with
    `dataclasses.replace` starts False): then `signing_bytes` is cut out of `raw`
    instead of re-encoded."""

    def unsigned_map(self) -> dict[str, Any]:
        """The map the signature covers: the envelope without `sig` (R8)."""
        return unsigned_map(self.chain_id, self.fee, self.nonce, self.payload, self.sender, self.type)

    def signing_bytes(self) -> bytes:
        """Domain tag + canonical unsigned map (R4).

        Speed: when `raw_matches_fields`, the unsigned map's bytes are cut out of `raw`
        (`speedups.unsigned_bytes_from_signed`) instead of encoded again.
        """
        if self.raw_matches_fields:
            unsigned = speedups.unsigned_bytes_from_signed(self.raw, self.sig, self.type)
            if unsigned is not None:
                return _TX_TAG + unsigned
        return signing_bytes("tx", self.unsigned_map())

    def has_valid_signature(self) -> bool:
        """True iff `sig` is the sender's signature of `signing_bytes()` (R3, R8)."""
        return verify_signature(self.sender, self.signing_bytes(), self.sig)

    def to_map(self) -> dict[str, Any]:
        """The full signed map."""
        return {**self.unsigned_map(), "sig": self.sig}


def unsigned_map(
    chain_id: str, fee: int, nonce: int, payload: dict[str, Any], sender: bytes, tx_type: str
) -> dict[str, Any]:
    """The unsigned transaction map of R8."""
    return {
        "chain_id": chain_id,
        "fee": fee,
        "nonce": nonce,
        "payload": payload,
        "sender": sender,
        "type": tx_type,
    }


def sign_transaction(
    key: KeyPair, chain_id: str, tx_type: str, payload: dict[str, Any], nonce: int, fee: int
) -> Transaction:
    """Build and sign a transaction with `key` (R4, R8)."""
    body = unsigned_map(chain_id, fee, nonce, payload, key.address, tx_type)
    signature = key.sign(signing_bytes("tx", body))
    raw = codec.encode({**body, "sig": signature})
    return _matching_raw(Transaction(
        chain_id=chain_id,
        fee=fee,
        nonce=nonce,
        payload=body["payload"],
        sender=key.address,
        type=tx_type,
        sig=signature,
        raw=raw,
        hash=hashlib.sha256(raw).digest(),
    ))


def decode_transaction(raw: bytes, max_tx_bytes: int) -> Transaction:
    """Parse signed transaction bytes, checking size, canonical form and envelope types.

    Raises `AdmissionError` with `tx_too_large` or `malformed` (R10, R12). The payload's
    own schema and the signature are checked by admission, not here.
    """
    if len(raw) > max_tx_bytes:
        raise AdmissionError(
            "tx_too_large", f"transaction is {len(raw)} bytes, the limit is {max_tx_bytes}"
        )
    try:
        value = codec.decode(raw)
    except CodecError as error:
        raise AdmissionError("malformed", error.message) from None
    if not isinstance(value, dict):
        raise AdmissionError("malformed", "a transaction is a map")
    if tuple(value) != ENVELOPE_KEYS:  # a canonical envelope has exactly these, in order
        for key in ENVELOPE_KEYS:
            if key not in value:
                raise AdmissionError("malformed", f"field {key} is missing")
        for key in value:
            if key not in ENVELOPE_KEYS:
                raise AdmissionError("malformed", f"unknown field {key}")
    _require(isinstance(value["chain_id"], str), "chain_id must be text")
    _require(_is_uint(value["fee"]), "fee must be an unsigned integer")
    _require(_is_uint(value["nonce"]), "nonce must be an unsigned integer")
    _require(isinstance(value["payload"], dict), "payload must be a map")
    _require(isinstance(value["sender"], bytes) and len(value["sender"]) == 32, "sender must be 32 bytes")
    _require(isinstance(value["sig"], bytes) and len(value["sig"]) == 64, "sig must be 64 bytes")
    _require(isinstance(value["type"], str), "type must be text")
    return _matching_raw(Transaction(
        chain_id=value["chain_id"],
        fee=value["fee"],
        nonce=value["nonce"],
        payload=value["payload"],
        sender=value["sender"],
        type=value["type"],
        sig=value["sig"],
        raw=bytes(raw),
        hash=hashlib.sha256(raw).digest(),
    ))


def _matching_raw(tx: Transaction) -> Transaction:
    """Mark a transaction whose `raw` was just made from, or decoded into, its fields."""
    object.__setattr__(tx, "raw_matches_fields", True)
    return tx


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AdmissionError("malformed", message)
