"""Shared by the transaction, admission and schema tests: keys, signed transaction maps
(with any field wrong on purpose) and the admission verdict as a code."""

from __future__ import annotations

import hashlib
from typing import Any

from marketplace_tx.chain.params import Params
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, signing_bytes
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.admission import check_stateless

CHAIN_ID = "marketchain-test"
PARAMS = Params()


def key(name: str) -> KeyPair:
    """A key from a fixed seed derived from `name`."""
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


ALICE = key("alice")
BOB = key("bob")


def transfer_payload(**overrides: Any) -> dict[str, Any]:
    """A valid transfer payload to Bob, with `overrides`."""
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
    """The canonical bytes of `signed_map(**kwargs)`."""
    return codec.encode(signed_map(**kwargs))


def admission_code(raw: bytes, params: Params = PARAMS) -> str | None:
    """The R12 code with which the stateless checks refuse `raw`, or None."""
    try:
        check_stateless(raw, CHAIN_ID, params)
    except AdmissionError as error:
        return error.code
    return None
