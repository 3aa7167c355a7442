"""The mempool's speed paths against its plain ones (PROTOCOL R10, R12; docs/performance.md).

- `Mempool.precheck` + `add_checked(..., prechecked=True)` (stateless checks and the
  signature in worker threads) must give the outcome, error code (R12) and message of
  the plain `add`, for valid transactions, bad signatures, bad schemas, duplicates and
  every stateful rejection (R10).
- `remove_committed(txs, changed_accounts)` re-checks only the senders whose accounts
  the block changed; it must drop what the full `recheck()` drops (stale nonces,
  unpayable fees) and leave other senders alone.
- `expire` keeps a lower bound of admission times and does nothing while nothing can
  have expired; it must still drop exactly the transactions past their TTL (with their
  senders' later nonces), also after removals.
- A defect these tests found stays fixed: a re-check no longer counts the fee of a
  stale transaction it drops. Fee sums, eviction and random histories through both
  paths: `test_mempool_fee_sums.py`.
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


def admit_plain(pool: Mempool, raw: bytes, now_ms: int = 0) -> Transaction:
    return pool.add(raw, now_ms)


def admit_prechecked(pool: Mempool, raw: bytes, now_ms: int = 0) -> Transaction:
    return pool.add_checked(pool.precheck(raw), now_ms, prechecked=True)


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


# --------------------------------------------------------------------------- precheck + add_checked


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
        admit_plain(pool, tx.raw)


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


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_prechecked_admission_matches_plain_admission(name: str) -> None:
    setup, raw, expected_code = SCENARIOS[name]
    results = []
    for admit in (admit_plain, admit_prechecked):
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
def test_precheck_raises_exactly_the_stateless_errors_with_r12_codes(name: str) -> None:
    setup, raw, expected_code = SCENARIOS[name]
    ledger = Ledger()
    pool = make_pool(ledger, max_transactions=2)
    setup(ledger, pool)
    before = contents(pool)
    if expected_code in STATELESS_CODES or name == "duplicate_committed":
        with pytest.raises(AdmissionError) as raised:
            pool.precheck(raw)
        assert raised.value.code == expected_code and expected_code in R12_CODES
        assert raised.value.message  # names the field or rule
    else:  # stateful: precheck passes, add_checked decides
        assert pool.precheck(raw).raw == raw
    assert contents(pool) == before  # precheck never changes the pool


def test_precheck_skips_a_signature_it_already_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger()
    pool = make_pool(ledger, ttl_ms=10)
    tx = transfer(ALICE, 0)
    admit_prechecked(pool, tx.raw, now_ms=0)
    assert [dropped.hash for dropped in pool.expire(now_ms=11)] == [tx.hash]
    checks = []
    monkeypatch.setattr(Transaction, "has_valid_signature", lambda self: checks.append(self.hash) or True)
    admit_prechecked(pool, tx.raw, now_ms=20)  # resubmitted after expiry
    assert checks == [] and pool.get(tx.hash) is not None
    admit_prechecked(pool, transfer(BOB, 0).raw)
    assert checks == [transfer(BOB, 0).hash]


def test_a_transaction_committed_between_precheck_and_add_is_a_duplicate() -> None:
    ledger = Ledger()
    pool = make_pool(ledger)
    tx = transfer(ALICE, 0)
    prechecked = pool.precheck(tx.raw)
    ledger.committed.add(tx.hash)  # a block with it was stored meanwhile
    ledger.accounts[ALICE.address] = Account(balance=999_990, nonce=1)
    with pytest.raises(AdmissionError) as raised:
        pool.add_checked(prechecked, prechecked=True)
    assert raised.value.code == "duplicate" and len(pool) == 0


# --------------------------------------------------------------------------- partial recheck


class CountingLedger(Ledger):
    """A ledger that records which accounts the mempool read."""

    def __init__(self) -> None:
        super().__init__()
        self.accounts[DAVE.address] = Account(balance=1_000_000)
        self.reads: list[bytes] = []

    def account(self, address: bytes) -> Account:
        self.reads.append(address)
        return super().account(address)


def busy_pool(ledger: Ledger) -> Mempool:
    pool = make_pool(ledger)
    for sender in SENDERS:
        for nonce in range(3):
            admit_plain(pool, transfer(sender, nonce).raw)
    return pool


def block_effects(ledger: Ledger) -> tuple[list[Transaction], list[bytes]]:
    """A block: ALICE's nonce 0 included; BOB's nonce 0 came from elsewhere (another tx);
    CAROL's included nonce 0 spent nearly all her funds. DAVE is untouched."""
    included = [transfer(ALICE, 0), transfer(CAROL, 0)]
    ledger.committed.update(tx.hash for tx in included)
    ledger.accounts[ALICE.address] = Account(balance=999_990, nonce=1)
    ledger.accounts[BOB.address] = Account(balance=999_990, nonce=1)
    ledger.accounts[CAROL.address] = Account(balance=15, nonce=1)
    return included, [ALICE.address, BOB.address, CAROL.address, b"\x09" * 32]


def test_partial_recheck_reads_only_changed_senders_and_matches_the_full_recheck() -> None:
    partial_ledger, full_ledger = CountingLedger(), CountingLedger()
    partial, full = busy_pool(partial_ledger), busy_pool(full_ledger)
    included, changed = block_effects(partial_ledger)
    block_effects(full_ledger)
    partial_ledger.reads.clear()
    partial.remove_committed(included, changed)
    full.remove_committed(included)
    assert set(partial_ledger.reads) == {ALICE.address, BOB.address, CAROL.address}
    assert contents(partial) == contents(full)
    remaining = {(tx.sender, tx.nonce) for tx in partial._by_hash.values()}
    assert remaining == {
        (ALICE.address, 1), (ALICE.address, 2),  # nonce 0 was included
        (BOB.address, 1), (BOB.address, 2),  # stale nonce 0 dropped
        (CAROL.address, 1),  # 15 pays one more fee of 10, not two
        (DAVE.address, 0), (DAVE.address, 1), (DAVE.address, 2),  # untouched
    }
    assert_fee_sums(partial)


def test_recheck_does_not_count_fees_of_stale_transactions_it_drops() -> None:
    ledger = Ledger()
    ledger.accounts[ALICE.address] = Account(balance=30)
    pool = make_pool(ledger)
    for nonce in range(3):
        admit_plain(pool, transfer(ALICE, nonce).raw)
    ledger.accounts[ALICE.address] = Account(balance=20, nonce=1)  # another nonce-0 tx was committed
    pool.remove_committed([], [ALICE.address])
    fresh = make_pool(ledger)
    for nonce in (1, 2):
        admit_plain(fresh, transfer(ALICE, nonce).raw)  # admission accepts both
    assert contents(pool) == contents(fresh)


# --------------------------------------------------------------------------- expiry


class CountingDict(dict):
    """A dict that counts whole-pool scans (`values`, which `expire` needs to scan)."""

    scans = 0

    def values(self):  # type: ignore[override]
        CountingDict.scans += 1
        return super().values()


def test_expire_does_not_scan_while_nothing_can_have_expired() -> None:
    pool = make_pool(Ledger(), ttl_ms=1000)
    for nonce, now_ms in enumerate((100, 400, 900)):
        admit_plain(pool, transfer(ALICE, nonce).raw, now_ms)
    pool._admitted_at = CountingDict(pool._admitted_at)
    CountingDict.scans = 0
    before = contents(pool)
    for now_ms in (100, 700, 1099, 1100):  # 1100 - 100 = ttl: not yet past it
        assert pool.expire(now_ms) == []
    assert CountingDict.scans == 0 and contents(pool) == before
    assert [tx.nonce for tx in pool.expire(1101)] == [0, 1, 2]  # nonce 0 expired, its successors go
    assert CountingDict.scans > 0 and len(pool) == 0


def test_expire_drops_exactly_the_transactions_past_their_ttl() -> None:
    pool = make_pool(Ledger(), ttl_ms=1000)
    times = {(ALICE, 0): 0, (ALICE, 1): 600, (BOB, 0): 500, (BOB, 1): 300, (CAROL, 0): 501}
    for (sender, nonce), now_ms in times.items():
        admit_plain(pool, transfer(sender, nonce).raw, now_ms)
    assert {(tx.sender, tx.nonce) for tx in pool.expire(1301)} == {
        (ALICE.address, 0), (ALICE.address, 1),  # ALICE 1 is young but follows an expired nonce
        (BOB.address, 1),  # BOB 0 (500) stays: 1301 - 500 < ttl
    }
    assert pool.expire(1500) == []  # 1500 - 500 = ttl exactly
    assert [(tx.sender, tx.nonce) for tx in pool.expire(1501)] == [(BOB.address, 0)]
    assert [(tx.sender, tx.nonce) for tx in pool.expire(1502)] == [(CAROL.address, 0)]
    assert len(pool) == 0 and pool.size_bytes == 0 and pool.expire(10**9) == []
    assert_fee_sums(pool)


def test_the_admission_time_bound_stays_correct_after_removals_and_late_admissions() -> None:
    ledger = Ledger()
    pool = make_pool(ledger, ttl_ms=1000)
    first, second = transfer(ALICE, 0), transfer(BOB, 0)
    admit_plain(pool, first.raw, 0)
    admit_plain(pool, second.raw, 500)
    ledger.accounts[ALICE.address] = Account(balance=999_990, nonce=1)
    pool.remove_committed([first], [ALICE.address])  # the oldest leaves: the bound is now low
    assert pool.expire(1200) == [] and pool.get(second.hash) is not None
    admit_plain(pool, transfer(CAROL, 0).raw, 100)  # admitted "earlier" (a clock step back)
    assert [tx.sender for tx in pool.expire(1101)] == [CAROL.address]
    assert pool.expire(1500) == []
    assert [tx.hash for tx in pool.expire(1501)] == [second.hash]



def test_committed_transactions_leave_the_signature_cache() -> None:
    """The cache holds pending (and expired) transactions only: a final one is answered
    `duplicate` by the committed index before any signature check, so it is dropped."""
    pool = make_pool(Ledger())
    first, second = transfer(ALICE, 0), transfer(BOB, 0)
    for tx in (first, second):
        admit_prechecked(pool, tx.raw)
    assert pool.signature_known_valid(first.hash) and pool.signature_known_valid(second.hash)
    pool.remove_committed([first], [])
    assert not pool.signature_known_valid(first.hash)
    assert pool.signature_known_valid(second.hash) and pool.get(second.hash) is not None
