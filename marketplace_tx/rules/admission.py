"""The stateless admission checks of PROTOCOL R10.

`check_stateless` runs every check that needs no state, in this order (cheap first,
the signature last; docs/transactions.md): size (`tx_too_large`), canonical bytes and
envelope (`malformed`), chain (`wrong_chain`), type (`unknown_type`), payload schema
(`invalid_field`), fee (`fee_too_low`), signature (`bad_signature`). The same checks
decide whether a transaction may stand in a block (R11). Stateful checks (nonce,
funds, duplicates, capacity) live in the mempool.
"""

from __future__ import annotations

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, decode_transaction
from marketplace_tx.primitives.errors import AdmissionError, RuleError
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import check_payload


def check_stateless(
    raw: bytes, chain_id: str, params: Params, verify_signature: bool = True
) -> Transaction:
    """Decode `raw` and run every stateless check of R10; raise `AdmissionError` on failure."""
    tx = decode_transaction(raw, params.max_tx_bytes)
    check_decoded(tx, chain_id, params)
    if verify_signature and not tx.has_valid_signature():
        raise AdmissionError("bad_signature", "sig: not a valid signature of the sender")
    return tx


def check_decoded(tx: Transaction, chain_id: str, params: Params) -> None:
    """The stateless checks after decoding and before the signature (R10)."""
    if tx.chain_id != chain_id:
        raise AdmissionError("wrong_chain", f"chain_id: {tx.chain_id!r} is not {chain_id!r}")
    if tx.type not in HANDLERS:
        raise AdmissionError("unknown_type", f"type: {tx.type!r} is not a known transaction type")
    try:
        check_payload(tx.type, tx.payload)
    except RuleError as error:
        raise AdmissionError(error.code, error.message) from None
    if tx.fee < params.min_fee:
        raise AdmissionError("fee_too_low", f"fee: {tx.fee} is below min_fee {params.min_fee}")
