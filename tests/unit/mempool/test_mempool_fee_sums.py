"""The mempool's per-sender fee sums and eviction, and random histories through two
pools kept in lockstep (PROTOCOL R10; docs/performance.md).

- The per-sender running fee sum must equal the sum of the pending fees through
  admission, removal, eviction and expiry; an evicted fee is free again.
- A newcomer that is refused (`mempool_full`) evicts nothing (a defect these tests found).
- Random histories of admissions, blocks and time run through a pool as the node uses
  it (known signatures skipped, partial recheck) and a plain one (every signature
  verified, full recheck) in lockstep: both pools stay equal, expiry agrees with a full
  scan, and every fee sum is right.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.accounts import Account
from mempool.pool import Mempool
from tests.unit.mempool.test_mempool import ALICE, BOB, CAROL, CHAIN_ID, Ledger, make_pool, transfer
from tests.unit.mempool.test_mempool_admission_order import (
    DAVE,
    SENDERS,
    TO_BOB,
    admit_known,
    admit_verifying,
    admitted_first,
    assert_fee_sums,
    contents,
    outcome,
)

# --------------------------------------------------------------------------- fee sums


def test_fee_sums_follow_eviction_so_the_evicted_fee_is_free_again() -> None:
    ledger = Ledger()
    ledger.accounts[ALICE.address] = Account(balance=30)
    pool = make_pool(ledger, max_transactions=3)
    admit_known(pool, transfer(ALICE, 0).raw)
    tail = admit_known(pool, transfer(ALICE, 1).raw)
    admit_known(pool, transfer(BOB, 0, fee=50).raw)
    admit_known(pool, transfer(CAROL, 0, fee=100).raw)  # evicts ALICE's tail (lowest fee rate)
    assert pool.get(tail.hash) is None
    assert_fee_sums(pool)
    with pytest.raises(AdmissionError, match="insufficient_funds"):
        pool.check_against_state(transfer(ALICE, 1, fee=21))  # 10 pending + 21 > 30
    pool.check_against_state(transfer(ALICE, 1, fee=20))  # 10 pending + 20 = 30


def test_a_refused_newcomer_evicts_nothing() -> None:
    cheap, dear = transfer(ALICE, 0, fee=10), transfer(BOB, 0, fee=10_000)
    pool = make_pool(Ledger(), max_bytes=len(cheap.raw) + len(dear.raw))
    admitted_first(pool, cheap, dear)
    large = sign_transaction(CAROL, CHAIN_ID, "transfer", {**TO_BOB, "memo": "x" * 200}, 0, 1000)
    with pytest.raises(AdmissionError, match="mempool_full"):
        admit_known(pool, large.raw)  # it needs both slots, and `dear` pays a better fee rate
    assert pool.get(cheap.hash) is not None


@cache
def cached_transfer(sender_index: int, nonce: int, fee: int) -> Transaction:
    return transfer(SENDERS[sender_index], nonce, fee)


ADD = st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 3), st.sampled_from([10, 20, 45]),
                st.sampled_from([0, 0, 250]))
OPERATIONS = st.lists(
    st.one_of(
        ADD, ADD, ADD,
        st.tuples(st.just("block"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("time"), st.integers(1, 700)),
    ),
    min_size=10,
    max_size=50,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_random_histories_keep_both_paths_equal_and_fee_sums_right(operations: list[tuple]) -> None:
    """Two pools in lockstep (known signatures skipped + partial recheck, every
    signature verified + full recheck) hold the same transactions; expiry drops exactly what a full scan says."""
    ledger = Ledger()
    ledger.accounts.update({key.address: Account(balance=400) for key in SENDERS[:3]})
    ledger.accounts[DAVE.address] = Account(balance=100)
    fast, plain = (make_pool(ledger, max_transactions=5, ttl_ms=1000) for _ in range(2))
    admitted_at: dict[bytes, int] = {}
    now_ms = 0
    for operation in operations:
        if operation[0] == "add":
            _, sender_index, offset, fee, lag = operation
            nonce = ledger.account(SENDERS[sender_index].address).nonce + offset
            tx = cached_transfer(sender_index, nonce, fee)
            result = outcome(admit_known, fast, tx.raw, now_ms - lag)
            assert result == outcome(admit_verifying, plain, tx.raw, now_ms - lag)
            if result[0] == "ok":
                admitted_at[tx.hash] = now_ms - lag
        elif operation[0] == "block":
            _, sender_index, from_pool = operation
            address = SENDERS[sender_index].address
            account = ledger.account(address)
            ready = [tx for tx in fast.ready() if tx.sender == address][:1]
            included = ready if from_pool else []  # else: a tx from elsewhere took the nonce
            ledger.committed.update(tx.hash for tx in included)
            ledger.accounts[address] = Account(balance=max(0, account.balance - 55), nonce=account.nonce + 1)
            fast.remove_committed(included, [address])
            plain.remove_committed(included)
        else:
            now_ms += operation[1]
            admitted_at = {tx_hash: at for tx_hash, at in admitted_at.items() if fast.get(tx_hash)}
            expected = expected_expiry(fast, admitted_at, now_ms)
            assert {tx.hash for tx in fast.expire(now_ms)} == expected
            assert {tx.hash for tx in plain.expire(now_ms)} == expected
        assert contents(fast) == contents(plain)
        assert set(fast._by_hash) == set(plain._by_hash)
        assert_fee_sums(fast)
        assert_fee_sums(plain)


def expected_expiry(pool: Mempool, admitted_at: dict[bytes, int], now_ms: int) -> set[bytes]:
    """By a full scan: every tx past the TTL, and every later nonce of its sender."""
    pending = [pool.get(tx_hash) for tx_hash in admitted_at]
    first_expired: dict[bytes, int] = {}
    for tx in pending:
        if now_ms - admitted_at[tx.hash] > pool.limits.ttl_ms:
            first_expired[tx.sender] = min(tx.nonce, first_expired.get(tx.sender, tx.nonce))
    return {tx.hash for tx in pending if tx.sender in first_expired and tx.nonce >= first_expired[tx.sender]}
