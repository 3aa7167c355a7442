"""The stateless admission checks of PROTOCOL R10, and their verdict on one transaction.

`check_stateless` runs every check that needs no state, in this order (cheap first,
the signature last; docs/protocol-decisions.md): size (`tx_too_large`), canonical bytes and
envelope (`malformed`), chain (`wrong_chain`), type (`unknown_type`), payload schema
(`invalid_field`), fee (`fee_too_low`), signature (`bad_signature`). The same checks
decide whether a transaction may stand in a block (R11).

`admission_verdict` is the one function admission runs on incoming bytes: the same
checks, with the signature's outcome *reported* rather than raised, because R10 answers
a known transaction (`duplicate`) before a bad signature, and whether a transaction is
known is state. Stateful checks (duplicates, nonce, funds, capacity) live in the mempool
(`Mempool.admit`), which takes a `Verdict`. The verdict is a plain value: it can be
computed in this thread, a thread pool or a worker process (node/admission.py) and means
the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, decode_transaction
from marketplace_tx.primitives.errors import AdmissionError, RuleError
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import check_payload

BAD_SIGNATURE_MESSAGE = "sig: not a valid signature of the sender"
"""The message of every `bad_signature` admission error (R10, R12)."""


def check_stateless(
    raw: bytes, chain_id: str, params: Params, verify_signature: bool = True
) -> Transaction:
    """Decode `raw` and run every stateless check of R10; raise `AdmissionError` on failure."""
    tx = decode_transaction(raw, params.max_tx_bytes)
    check_decoded(tx, chain_id, params)
    if verify_signature and not tx.has_valid_signature():
        raise AdmissionError("bad_signature", BAD_SIGNATURE_MESSAGE)
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


class Verdict(NamedTuple):
    """What the stateless checks of R10 say about one transaction's bytes.

    A plain tuple, so that a worker process sends it back cheaply (pickled) and two
    verdicts on the same bytes compare equal wherever they were computed.
    """

    transaction: Transaction | None
    """The decoded transaction; None when a check before the signature failed."""
    signature_valid: bool
    """True when the signature is valid (verified now, or known valid); False when it
    is not, or when no transaction decoded."""
    signature_verified: bool
    """True when this verdict verified the signature (False: it was known, or a check
    before it failed). Counted by the node's metrics."""
    error_code: str = ""
    """The R12 code of the first failed check before the signature, or empty."""
    error_message: str = ""
    """The message of that failure, naming the field or rule, or empty."""

    def error(self) -> AdmissionError | None:
        """The `AdmissionError` of a failed check before the signature, or None."""
        return AdmissionError(self.error_code, self.error_message) if self.error_code else None


def no_signature_known(tx_hash: bytes) -> bool:
    """The default `signature_known_valid`: every signature is verified."""
    return False


def admission_verdict(
    raw: bytes, chain_id: str, params: Params,
    signature_known_valid: Callable[[bytes], bool] = no_signature_known,
) -> Verdict:
    """The stateless checks of R10 on `raw`, cheapest first (size, decoding, chain, type,
    schema, fee), then the signature unless `signature_known_valid(tx_hash)` (a signature
    the caller already verified: only ever pass hashes of verified signatures). Never
    raises."""
    try:
        tx = check_stateless(raw, chain_id, params, verify_signature=False)
    except AdmissionError as error:
        return Verdict(None, False, False, error.code, error.message)
    if signature_known_valid(tx.hash):
        return Verdict(tx, True, False)
    return Verdict(tx, tx.has_valid_signature(), True)


def admission_verdicts(
    raws: Sequence[bytes], chain_id: str, params: Params,
    signature_known_valid: Callable[[bytes], bool] = no_signature_known,
) -> list[Verdict]:
    """`admission_verdict` of each of `raws`, in order (one call per chunk of a batch)."""
    return [admission_verdict(raw, chain_id, params, signature_known_valid) for raw in raws]
