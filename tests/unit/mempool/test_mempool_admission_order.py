"""Admission answers every kind of transaction with its R10 code, in R10's order
(PROTOCOL R10, R12; docs/performance.md).

- Every scenario (valid, bad signatures, bad schemas, wrong chain, oversize, garbage,
  duplicates pending or final, every stateful rejection) gets the expected code (R12),
  and the same outcome, message and pool contents whether the stateless verdict
  verified the signature or skipped one the pool knows valid.
- The stateless verdict (`admission_verdict`) reports exactly the stateless errors and
  never changes the pool; `Mempool.admit` decides the stateful ones.
- A signature already verified is not verified again; a transaction that becomes final
  between its verdict and `Mempool.admit` is a duplicate.
Re-check after blocks and expiry: `test_mempool_recheck_and_expiry.py`. Fee sums,
eviction and random histories: `test_mempool_fee_sums.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import ADMISSION_CODES, RULE_CODES, AdmissionError
from marketplace_tx.rules.accounts import Account
from marketplace_tx.rules.admission import Verdict, admission_verdict
from mempool.pool import NONCE_WINDOW, Mempool
from tests.unit.mempool.test_mempool import (
    ALICE,
    BOB,
    CAROL,
    CHAIN_ID,
    PARAMS,
    Ledger,
    make_pool,
    transfer,
)

DAVE = KeyPair.from_seed(bytes([4]) * 32)
SENDERS = (ALICE, BOB, CAROL, DAVE)
R12_CODES = set(ADMISSION_CODES) | set(RULE_CODES)


def admit_verifying(pool: Mempool, raw: bytes, now_ms: int = 0) -> Transaction:
    """Admission with every signature verified (no known signature skipped)."""
    return pool.admit(admission_verdict(raw, pool.chain_id, pool.params), now_ms)


def admit_known(pool: Mempool, raw: bytes, now_ms: int = 0) -> Transaction:
    """Admission as the node runs it: signatures the pool knows valid are skipped."""
    return pool.admit(admission_verdict(raw, pool.chain_id, pool.params, pool.signature_known_valid), now_ms)


Admit = Callable[[Mempool, bytes, int], Transaction]


def outcome(admit: Admit, pool: Mempool, raw: bytes, now_ms: int = 0) -> tuple:
    """("ok", hash) or ("error", code, message)."""
    try:
        return ("ok", admit(pool, raw, now_ms).hash)
    except AdmissionError as error:
        return ("error", error.code, error.message)


def contents(pool: Mempool) -> tuple:
    """What a pool holds, as far as its public interface shows."""
    ready = [tx.hash for tx in pool.ready()]
    return len(pool), pool.size_bytes, ready, pool.has_ready()


def assert_fee_sums(pool: Mempool) -> None:
    """Every sender's running fee sum equals its pending fees, recomputed (white box)."""
    senders = {}
    for tx in list(pool._by_hash.values()):
        senders.setdefault(tx.sender, []).append(tx)
    assert set(pool._senders) == set(senders)
    for sender, queue in pool._senders.items():
        assert sorted(queue.by_nonce) == sorted(tx.nonce for tx in senders[sender])
        assert all(queue.by_nonce[tx.nonce] is tx for tx in senders[sender])
        assert queue.fees == sum(tx.fee for tx in queue.by_nonce.values()), sender.hex()
    assert pool.size_bytes == sum(len(tx.raw) for tx in pool._by_hash.values())


# --------------------------------------------------------------------------- verdict + admit


def forged(tx: Transaction) -> bytes:
    """`tx` with one bit of its signature flipped."""
    return codec.encode({**tx.to_map(), "sig": bytes([tx.sig[0] ^ 1]) + tx.sig[1:]})


def signed(payload: dict, chain_id: str = CHAIN_ID, tx_type: str = "transfer") -> bytes:
    return sign_transaction(ALICE, chain_id, tx_type, payload, 0, 10).raw


def set_alice(ledger: Ledger, balance: int = 1_000_000, nonce: int = 0, committed: bytes = b"") -> None:
    ledger.accounts[ALICE.address] = Account(balance, nonce)
    if committed:
        ledger.committed.add(committed)


def admitted_first(pool: Mempool, *txs: Transaction) -> None:
    for tx in txs:
        admit_known(pool, tx.raw)


TO_BOB = {"to": BOB.address, "amount": 1}
SCENARIOS: dict[str, tuple[Callable[[Ledger, Mempool], object], bytes, str | None]] = {
    # name: (setup of ledger and pool, raw bytes submitted, expected code)
    "valid": (lambda ledger, pool: None, transfer(ALICE, 0).raw, None),
    "valid_future_nonce": (lambda ledger, pool: None, transfer(ALICE, NONCE_WINDOW).raw, None),
    "bad_signature_flipped_bit": (lambda ledger, pool: None, forged(transfer(ALICE, 0)), "bad_signature"),
    "bad_signature_other_signer": (
        lambda ledger, pool: None,
        codec.encode({**transfer(ALICE, 0).to_map(), "sig": transfer(BOB, 0).sig}),
        "bad_signature",
    ),
    "bad_signature_and_used_nonce": (  # the signature is checked before the nonce (R10 order)
        lambda ledger, pool: set_alice(ledger, nonce=3), forged(transfer(ALICE, 2)), "bad_signature"),
    "bad_schema_zero_amount": (lambda ledger, pool: None, signed({**TO_BOB, "amount": 0}), "invalid_field"),
    "bad_schema_unknown_key": (lambda ledger, pool: None, signed({**TO_BOB, "zz": 1}), "invalid_field"),
    "unknown_type": (lambda ledger, pool: None, signed({}, tx_type="teleport"), "unknown_type"),
    "wrong_chain": (lambda ledger, pool: None, signed(TO_BOB, "other"), "wrong_chain"),
    "fee_too_low": (lambda ledger, pool: None, transfer(ALICE, 0, fee=PARAMS.min_fee - 1).raw, "fee_too_low"),
    "malformed_bytes": (lambda ledger, pool: None, b"\x81\xa1a\xcc\x01", "malformed"),
    "tx_too_large": (lambda ledger, pool: None, b"\x00" * (PARAMS.max_tx_bytes + 1), "tx_too_large"),
    "duplicate_committed": (
        lambda ledger, pool: set_alice(ledger, nonce=1, committed=transfer(ALICE, 0).hash),
        transfer(ALICE, 0).raw,
        "duplicate",
    ),
    "duplicate_pending": (lambda ledger, pool: admitted_first(pool, transfer(ALICE, 0)),
                          transfer(ALICE, 0).raw, "duplicate"),
    "bad_nonce_used": (lambda ledger, pool: set_alice(ledger, nonce=3), transfer(ALICE, 2).raw, "bad_nonce"),
    "bad_nonce_too_far": (lambda ledger, pool: None, transfer(ALICE, NONCE_WINDOW + 1).raw, "bad_nonce"),
    "bad_nonce_pending": (lambda ledger, pool: admitted_first(pool, transfer(ALICE, 0)),
                          transfer(ALICE, 0, fee=11).raw, "bad_nonce"),
    "insufficient_funds": (lambda ledger, pool: set_alice(ledger, balance=PARAMS.min_fee - 1),
                           transfer(ALICE, 0, fee=PARAMS.min_fee).raw, "insufficient_funds"),
    "mempool_full": (lambda ledger, pool: admitted_first(pool, transfer(BOB, 0, fee=50), transfer(CAROL, 0, fee=50)),
                     transfer(ALICE, 0, fee=10).raw, "mempool_full"),
}
STATELESS_CODES = {"bad_signature", "invalid_field", "unknown_type", "wrong_chain", "fee_too_low",
                   "malformed", "tx_too_large"}


def raw_hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def verdict_of(pool: Mempool, raw: bytes) -> Verdict:
    return admission_verdict(raw, pool.chain_id, pool.params, pool.signature_known_valid)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_admission_answers_each_scenario_alike_with_or_without_known_signatures(name: str) -> None:
    setup, raw, expected_code = SCENARIOS[name]
    results = []
    for admit in (admit_verifying, admit_known):
        ledger = Ledger()
        pool = make_pool(ledger, max_transactions=2)
        setup(ledger, pool)
        results.append((outcome(admit, pool, raw), contents(pool), pool.signature_known_valid(raw_hash(raw))))
        assert_fee_sums(pool)
    assert results[0] == results[1]
    assert results[0][0][0] == ("ok" if expected_code is None else "error")
    if expected_code is not None:
        assert results[0][0][1] == expected_code


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_verdict_reports_exactly_the_stateless_errors_with_r12_codes(name: str) -> None:
    setup, raw, expected_code = SCENARIOS[name]
    ledger = Ledger()
    pool = make_pool(ledger, max_transactions=2)
    setup(ledger, pool)
    before = contents(pool)
    verdict = verdict_of(pool, raw)
    if expected_code == "bad_signature":
        assert verdict.transaction is not None and not verdict.signature_valid and verdict.error() is None
    elif expected_code in STATELESS_CODES:
        assert verdict.transaction is None and verdict.error_code == expected_code
        assert expected_code in R12_CODES
        assert verdict.error_message  # names the field or rule
    else:  # stateful: the verdict passes, `Mempool.admit` decides
        assert verdict.transaction is not None and verdict.transaction.raw == raw and verdict.signature_valid
    assert contents(pool) == before  # a verdict never changes the pool


def test_a_signature_already_verified_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger()
    pool = make_pool(ledger, ttl_ms=10)
    tx = transfer(ALICE, 0)
    admit_known(pool, tx.raw, now_ms=0)
    assert [dropped.hash for dropped in pool.expire(now_ms=11)] == [tx.hash]
    checks = []
    monkeypatch.setattr(Transaction, "has_valid_signature", lambda self: checks.append(self.hash) or True)
    admit_known(pool, tx.raw, now_ms=20)  # resubmitted after expiry
    assert checks == [] and pool.get(tx.hash) is not None
    admit_known(pool, transfer(BOB, 0).raw)
    assert checks == [transfer(BOB, 0).hash]


def test_a_transaction_committed_between_verdict_and_admit_is_a_duplicate() -> None:
    ledger = Ledger()
    pool = make_pool(ledger)
    tx = transfer(ALICE, 0)
    verdict = verdict_of(pool, tx.raw)
    ledger.committed.add(tx.hash)  # a block with it was stored meanwhile
    ledger.accounts[ALICE.address] = Account(balance=999_990, nonce=1)
    with pytest.raises(AdmissionError) as raised:
        pool.admit(verdict)
    assert raised.value.code == "duplicate" and len(pool) == 0
