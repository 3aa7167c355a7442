"""Fuzzing of transaction decoding and admission (PROTOCOL R8, R10, R12).

`check_stateless` and the mempool refuse a transaction only with AdmissionError and an
R12 code; what they accept is exactly the input bytes, signed, for this chain. A
payload of any shape passes the schema or is refused with RuleError `invalid_field`.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import sha256
from marketplace_tx.primitives.errors import ADMISSION_CODES, AdmissionError, RuleError
from marketplace_tx.rules.accounts import Account
from marketplace_tx.rules.admission import admission_verdict, check_stateless
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import SCHEMAS, check_payload
from mempool.pool import Mempool
from tests.fuzz.strategies import (
    CHAIN,
    COUNTS,
    PARAMS,
    VALID_RAW,
    codec_values,
    field_values,
    fuzz_settings,
    iteration_report,
    maybe_missing_map,
    mutated,
    signed_envelopes,
)

print_iteration_counts = iteration_report("tests/fuzz/test_fuzz_transactions.py")


ADMISSION_RESULT_CODES = set(ADMISSION_CODES) | {"invalid_field", "insufficient_funds"}
"""Admission codes (R12), the schema's `invalid_field`, and `insufficient_funds` for an unpayable fee (R10)."""



def fresh_mempool(balance: int) -> Mempool:
    return Mempool(CHAIN, PARAMS, lambda address: Account(balance, 0), lambda tx_hash: False)


@fuzz_settings(600)
@given(data=st.binary(max_size=300) | mutated(VALID_RAW) | signed_envelopes(),
       balance=st.sampled_from([0, 10, 10**9]))
def test_transaction_decode_and_admission(data: bytes, balance: int) -> None:
    """R8, R10: `check_stateless` and the mempool refuse only with AdmissionError and an R12 code."""
    COUNTS["transaction admission (check_stateless, Mempool.admit)"] += 1
    try:
        tx = check_stateless(data, CHAIN, PARAMS)
    except AdmissionError as error:
        assert error.code in ADMISSION_RESULT_CODES, error
        accepted = False
    else:
        accepted = True
        assert tx.raw == data and tx.hash == sha256(data)
        assert tx.chain_id == CHAIN and tx.type in HANDLERS and tx.fee >= PARAMS.min_fee
        assert tx.has_valid_signature()
        check_payload(tx.type, tx.payload)
        assert codec.encode(tx.to_map()) == data
    try:
        pending = fresh_mempool(balance).admit(admission_verdict(data, CHAIN, PARAMS))
    except AdmissionError as error:
        assert error.code in ADMISSION_RESULT_CODES, error
    else:
        assert accepted and pending.raw == data


@fuzz_settings(300)
@given(tx_type=st.sampled_from(sorted(SCHEMAS)), data=st.data())
def test_payload_schema(tx_type: str, data: st.DataObject) -> None:
    """R10: a payload of any shape is refused with RuleError `invalid_field`, or holds only
    the schema's fields and every required one."""
    COUNTS["schema.check_payload"] += 1
    payload = data.draw(maybe_missing_map({name: field_values(tx_type, name) for name in SCHEMAS[tx_type].fields})
                        | codec_values)
    try:
        check_payload(tx_type, payload)
    except RuleError as error:
        assert error.code == "invalid_field"
        return
    fields = SCHEMAS[tx_type].fields  # accepted: only known fields, every required one present
    assert isinstance(payload, dict) and set(payload) <= set(fields)
    assert all(name in payload for name, spec in fields.items() if spec.required)
