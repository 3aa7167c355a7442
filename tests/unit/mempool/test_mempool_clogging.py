"""A mempool that cannot be clogged (issue 13, attack 5; PROTOCOL R10, R11; docs/security.md).

- Future transactions (nonce above a gap) are limited per sender and in total, expire
  after `future_ttl_ms`, are evicted before ready ones and never evict a ready one.
- Per sender, at most `max_pending_per_sender` pending transactions.
- Eviction only ever takes a sender's last nonce, and a refused admission at a full pool
  of thousands of senders never walks the senders (O(log n): the eviction heap).
- `ready` fills blocks by fee rate across senders, nonce order within each.
- `screen` answers what `admit` would, changing nothing; `last_promoted` and `is_ready`
  tell admission what to relay.
"""

from __future__ import annotations

import pytest

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.accounts import Account
from mempool.pool import Mempool
from tests.unit.mempool.test_mempool import (
    ALICE,
    BOB,
    CAROL,
    CHAIN_ID,
    Ledger,
    admit,
    code_of,
    make_pool,
    transfer,
)


class RichLedger(Ledger):
    """Every account is funded."""

    def account(self, address: bytes) -> Account:
        return self.accounts.get(address, Account(balance=1_000_000))


class CountingSenders(dict):
    """The pool's senders, counting every walk over all of them."""

    walks = 0

    def items(self):  # type: ignore[override]
        CountingSenders.walks += 1
        return super().items()

    def values(self):  # type: ignore[override]
        CountingSenders.walks += 1
        return super().values()

    def __iter__(self):
        CountingSenders.walks += 1
        return super().__iter__()


def key(index: int) -> KeyPair:
    return KeyPair.from_seed(index.to_bytes(4, "big") + bytes(28))


def sent(sender: KeyPair, nonce: int, fee: int = 10) -> Transaction:
    return sign_transaction(sender, CHAIN_ID, "transfer", {"to": CAROL.address, "amount": 1}, nonce, fee)


def nonces(pool: Mempool, sender: KeyPair) -> list[int]:
    return sorted(tx.nonce for tx, _ in pool.pending() if tx.sender == sender.address)


def test_future_transactions_are_limited_per_sender() -> None:
    pool = make_pool(Ledger(), max_future_per_sender=3)
    for nonce in (2, 3, 4):
        admit(pool, transfer(ALICE, nonce).raw)
    assert code_of(pool, transfer(ALICE, 5)) == "mempool_full"
    admit(pool, transfer(ALICE, 0).raw)  # ready transactions are not future ones
    assert pool.future_count == 3 and len(pool) == 4


def test_pending_transactions_are_limited_per_sender() -> None:
    pool = make_pool(Ledger(), max_pending_per_sender=3)
    for nonce in range(3):
        admit(pool, transfer(ALICE, nonce).raw)
    assert code_of(pool, transfer(ALICE, 3)) == "mempool_full"
    admit(pool, transfer(BOB, 0).raw)


def test_future_transactions_are_limited_in_total_and_only_evict_cheaper_future_ones() -> None:
    pool = make_pool(RichLedger(), max_future=2)
    cheap, dear = sent(key(1), 1, fee=10), sent(key(2), 1, fee=20)
    admit(pool, cheap.raw)
    admit(pool, dear.raw)
    assert code_of(pool, sent(key(3), 1, fee=10)) == "mempool_full"  # not better than the cheapest
    better = admit(pool, sent(key(3), 1, fee=15).raw)
    assert pool.get(cheap.hash) is None and pool.get(better.hash) and pool.get(dear.hash)
    admit(pool, sent(key(4), 0).raw)  # ready transactions do not count against max_future
    assert pool.future_count == 2 and len(pool) == 3


def test_a_future_transaction_never_evicts_a_ready_one() -> None:
    pool = make_pool(RichLedger(), max_transactions=2)
    ready = [admit(pool, sent(key(index), 0, fee=10).raw) for index in (1, 2)]
    assert code_of(pool, sent(key(3), 1, fee=10_000)) == "mempool_full"
    assert all(pool.get(tx.hash) for tx in ready)


def test_a_ready_newcomer_evicts_future_transactions_first_even_better_paying_ones() -> None:
    pool = make_pool(RichLedger(), max_transactions=3)
    ready = admit(pool, sent(key(1), 0, fee=10).raw)
    future = admit(pool, sent(key(2), 1, fee=1_000).raw)
    other = admit(pool, sent(key(3), 0, fee=10).raw)
    newcomer = admit(pool, sent(key(4), 0, fee=10).raw)
    assert pool.get(future.hash) is None
    assert all(pool.get(tx.hash) for tx in (ready, other, newcomer))


def test_eviction_takes_only_last_nonces_so_no_sender_gets_a_gap() -> None:
    pool = make_pool(RichLedger(), max_transactions=4)
    cheap = key(1)
    for nonce in range(3):
        admit(pool, sent(cheap, nonce, fee=10).raw)
    admit(pool, sent(key(2), 0, fee=40).raw)
    admit(pool, sent(key(3), 0, fee=30).raw)  # evicts cheap's nonce 2 (its tail)
    admit(pool, sent(key(4), 0, fee=30).raw)  # then its nonce 1
    assert nonces(pool, cheap) == [0]
    assert pool.has_ready() and len(list(pool.ready())) == 4


def test_future_transactions_expire_after_future_ttl_and_ready_ones_stay() -> None:
    pool = make_pool(Ledger(), future_ttl_ms=1_000, ttl_ms=60_000)
    ready = admit(pool, transfer(BOB, 0).raw, now_ms=0)
    futures = [admit(pool, transfer(ALICE, nonce).raw, now_ms=0) for nonce in (2, 3)]
    assert pool.expire(1_000) == []
    assert {tx.hash for tx in pool.expire(1_001)} == {tx.hash for tx in futures}
    assert pool.get(ready.hash) and pool.future_count == 0 and len(pool) == 1


def test_a_promoted_transaction_does_not_expire_as_future() -> None:
    pool = make_pool(Ledger(), future_ttl_ms=1_000, ttl_ms=60_000)
    waiting = admit(pool, transfer(ALICE, 1).raw, now_ms=0)
    assert not pool.is_ready(waiting.hash)
    filler = admit(pool, transfer(ALICE, 0).raw, now_ms=500)
    assert pool.last_promoted == [waiting] and pool.is_ready(waiting.hash) and pool.is_ready(filler.hash)
    assert pool.expire(5_000) == [] and len(pool) == 2


def test_blocks_take_the_best_fee_rate_first_across_senders_in_nonce_order() -> None:
    pool = make_pool(Ledger())
    for tx in (transfer(ALICE, 0, fee=10), transfer(ALICE, 1, fee=500), transfer(BOB, 0, fee=30),
               transfer(BOB, 1, fee=20), transfer(CAROL, 0, fee=100), transfer(CAROL, 2, fee=900)):
        admit(pool, tx.raw)
    order = [(tx.sender, tx.nonce) for tx in pool.ready()]
    assert order == [(CAROL.address, 0), (BOB.address, 0), (BOB.address, 1), (ALICE.address, 0),
                     (ALICE.address, 1)]  # CAROL's nonce 2 waits for 1; ALICE's 1 waits behind her 0
    assert [tx.nonce for tx in pool.ready(limit=2)] == [0, 0]


def test_a_refused_admission_at_a_full_pool_never_walks_the_senders() -> None:
    senders = 1_500
    pool = make_pool(RichLedger(), max_transactions=senders)
    for index in range(senders):
        admit(pool, sent(key(index), 0, fee=10 + index % 7).raw)
    pool._senders = CountingSenders(pool._senders)
    CountingSenders.walks = 0
    for index in range(50):
        with pytest.raises(AdmissionError, match="mempool_full"):
            admit(pool, sent(key(senders + index), 0, fee=10).raw)
        with pytest.raises(AdmissionError, match="mempool_full"):
            admit(pool, sent(key(senders + index), 1, fee=10_000).raw)  # future: never evicts ready
    evicting = admit(pool, sent(key(2 * senders), 0, fee=11).raw)
    assert CountingSenders.walks == 0
    assert len(pool) == senders and pool.get(evicting.hash)


def test_screen_answers_like_admit_and_changes_nothing() -> None:
    pool = make_pool(Ledger(), max_transactions=2, max_future_per_sender=1)
    admit(pool, transfer(ALICE, 0).raw)
    admit(pool, transfer(ALICE, 2).raw)
    before = list(pool.pending())
    cases = [transfer(ALICE, 0), transfer(ALICE, 5), transfer(ALICE, 100), transfer(BOB, 1, fee=10),
             transfer(BOB, 0, fee=10**9)]
    for tx in cases:
        with pytest.raises(AdmissionError) as screened:
            pool.screen(tx)
        assert screened.value.code == code_of(pool, tx)
        assert list(pool.pending()) == before
    pool.screen(transfer(BOB, 0))  # would fit, by evicting ALICE's future nonce: nothing changes yet
    assert list(pool.pending()) == before


def test_a_large_newcomer_evicts_several_last_nonces_lowest_first() -> None:
    small = [sent(key(index), 0, fee=10 + index) for index in range(1, 5)]
    large = sign_transaction(key(9), CHAIN_ID, "transfer", {"to": CAROL.address, "amount": 1, "memo": "m" * 256},
                             0, 10_000)
    pool = make_pool(RichLedger(), max_bytes=sum(len(tx.raw) for tx in small) + 10)
    for tx in small:
        admit(pool, tx.raw)
    admit(pool, large.raw)
    assert len(large.raw) > 2 * len(small[0].raw)  # three victims are needed
    assert [tx for tx in small if pool.get(tx.hash)] == [small[3]] and pool.get(large.hash)


def test_a_transaction_left_behind_a_gap_by_a_recheck_expires_as_future() -> None:
    ledger = Ledger()
    ledger.accounts[ALICE.address] = Account(balance=200)
    pool = make_pool(ledger, future_ttl_ms=1_000, ttl_ms=60_000)
    for nonce, fee in ((0, 10), (1, 150), (2, 10)):
        admit(pool, transfer(ALICE, nonce, fee=fee).raw, now_ms=0)
    assert pool.future_count == 0
    ledger.accounts[ALICE.address] = Account(balance=100)  # nonce 1's fee no longer payable
    pool.remove_committed([], [ALICE.address])
    assert nonces(pool, ALICE) == [0, 2] and pool.future_count == 1
    assert [tx.nonce for tx in pool.expire(1_001)] == [2]
