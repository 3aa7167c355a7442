"""The mempool after blocks and as time passes (PROTOCOL R10; docs/performance.md).

- `remove_committed(txs, changed_accounts)` re-checks only the senders whose accounts
  the block changed; it must drop what the full `recheck()` drops (stale nonces,
  unpayable fees) and leave other senders alone.
- `expire` keeps a lower bound of admission times and does nothing while nothing can
  have expired; it must still drop exactly the transactions past their TTL (with their
  senders' later nonces), also after removals.
- A defect these tests found stays fixed: a re-check no longer counts the fee of a
  stale transaction it drops.
- Final transactions leave the signature cache.
"""

from __future__ import annotations

from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.rules.accounts import Account
from mempool.pool import Mempool
from tests.unit.mempool.test_mempool import ALICE, BOB, CAROL, Ledger, make_pool, transfer
from tests.unit.mempool.test_mempool_admission_order import (
    DAVE,
    SENDERS,
    admit_known,
    assert_fee_sums,
    contents,
)

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
            admit_known(pool, transfer(sender, nonce).raw)
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
        admit_known(pool, transfer(ALICE, nonce).raw)
    ledger.accounts[ALICE.address] = Account(balance=20, nonce=1)  # another nonce-0 tx was committed
    pool.remove_committed([], [ALICE.address])
    fresh = make_pool(ledger)
    for nonce in (1, 2):
        admit_known(fresh, transfer(ALICE, nonce).raw)  # admission accepts both
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
        admit_known(pool, transfer(ALICE, nonce).raw, now_ms)
    pool._admitted_at = CountingDict(pool._admitted_at)
    CountingDict.scans = 0
    before = contents(pool)
    for now_ms in (100, 700, 1099, 1100):  # 1100 - 100 = ttl: not yet past it
        assert pool.expire(now_ms) == []
    assert CountingDict.scans == 0 and contents(pool) == before
    assert [tx.nonce for tx in pool.expire(1101)] == [0, 1, 2]  # nonce 0 expired, its successors go
    assert CountingDict.scans == 0 and len(pool) == 0  # expiry reads its age heap, never every transaction


def test_expire_drops_exactly_the_transactions_past_their_ttl() -> None:
    pool = make_pool(Ledger(), ttl_ms=1000)
    times = {(ALICE, 0): 0, (ALICE, 1): 600, (BOB, 0): 500, (BOB, 1): 300, (CAROL, 0): 501}
    for (sender, nonce), now_ms in times.items():
        admit_known(pool, transfer(sender, nonce).raw, now_ms)
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
    admit_known(pool, first.raw, 0)
    admit_known(pool, second.raw, 500)
    ledger.accounts[ALICE.address] = Account(balance=999_990, nonce=1)
    pool.remove_committed([first], [ALICE.address])  # the oldest leaves: the bound is now low
    assert pool.expire(1200) == [] and pool.get(second.hash) is not None
    admit_known(pool, transfer(CAROL, 0).raw, 100)  # admitted "earlier" (a clock step back)
    assert [tx.sender for tx in pool.expire(1101)] == [CAROL.address]
    assert pool.expire(1500) == []
    assert [tx.hash for tx in pool.expire(1501)] == [second.hash]



def test_committed_transactions_leave_the_signature_cache() -> None:
    """The cache holds pending (and expired) transactions only: a final one is answered
    `duplicate` by the committed index whatever its signature's verdict, so it is dropped."""
    pool = make_pool(Ledger())
    first, second = transfer(ALICE, 0), transfer(BOB, 0)
    for tx in (first, second):
        admit_known(pool, tx.raw)
    assert pool.signature_known_valid(first.hash) and pool.signature_known_valid(second.hash)
    pool.remove_committed([first], [])
    assert not pool.signature_known_valid(first.hash)
    assert pool.signature_known_valid(second.hash) and pool.get(second.hash) is not None
