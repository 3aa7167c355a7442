"""The mempool: admission (R10), nonce order, limits, eviction, expiry and re-check."""

from __future__ import annotations

import pytest

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.accounts import Account
from marketplace_tx.rules.admission import admission_verdict
from mempool.pool import NONCE_WINDOW, Mempool, MempoolLimits

CHAIN_ID = "marketchain-mempool"
PARAMS = Params()
ALICE, BOB, CAROL = (KeyPair.from_seed(bytes([n]) * 32) for n in (1, 2, 3))


class Ledger:
    """Committed accounts the mempool reads, and committed tx hashes."""

    def __init__(self) -> None:
        self.accounts = {key.address: Account(balance=1_000_000) for key in (ALICE, BOB, CAROL)}
        self.committed: set[bytes] = set()

    def account(self, address: bytes) -> Account:
        return self.accounts.get(address, Account())


def transfer(sender: KeyPair, nonce: int, fee: int = 10, amount: int = 1) -> Transaction:
    return sign_transaction(sender, CHAIN_ID, "transfer", {"to": CAROL.address, "amount": amount}, nonce, fee)


def make_pool(ledger: Ledger, **limits: int) -> Mempool:
    return Mempool(CHAIN_ID, PARAMS, ledger.account, ledger.committed.__contains__, MempoolLimits(**limits))


def admit(pool: Mempool, raw: bytes, now_ms: int = 0) -> Transaction:
    """Admission as a node runs it (R10): the stateless verdict, skipping a signature the
    pool knows valid, then `Mempool.admit`."""
    verdict = admission_verdict(raw, pool.chain_id, pool.params, pool.signature_known_valid)
    return pool.admit(verdict, now_ms)


def code_of(pool: Mempool, tx: Transaction) -> str:
    with pytest.raises(AdmissionError) as raised:
        admit(pool, tx.raw)
    return raised.value.code


def test_ready_transactions_come_per_sender_in_nonce_order() -> None:
    pool = make_pool(Ledger())
    for tx in (transfer(ALICE, 1), transfer(BOB, 0), transfer(ALICE, 0), transfer(ALICE, 3)):
        admit(pool, tx.raw)
    ready = [(tx.sender, tx.nonce) for tx in pool.ready()]
    assert ready == [(ALICE.address, 0), (ALICE.address, 1), (BOB.address, 0)]  # nonce 3 waits for 2
    assert pool.pending_nonce(ALICE.address, 0) == 2
    assert pool.has_ready()


def test_nonce_window_and_taken_nonces() -> None:
    ledger = Ledger()
    ledger.accounts[ALICE.address] = Account(balance=1_000_000, nonce=5)
    pool = make_pool(ledger)
    assert code_of(pool, transfer(ALICE, 4)) == "bad_nonce"
    assert code_of(pool, transfer(ALICE, 5 + NONCE_WINDOW + 1)) == "bad_nonce"
    admit(pool, transfer(ALICE, 5 + NONCE_WINDOW).raw)
    assert not pool.has_ready()
    admit(pool, transfer(ALICE, 5).raw)
    assert code_of(pool, transfer(ALICE, 5, fee=11)) == "bad_nonce"


def test_duplicates_pending_or_committed() -> None:
    ledger = Ledger()
    pool = make_pool(ledger)
    tx = transfer(ALICE, 0)
    admit(pool, tx.raw)
    assert code_of(pool, tx) == "duplicate"
    committed = transfer(BOB, 0)
    ledger.committed.add(committed.hash)
    assert code_of(pool, committed) == "duplicate"


def test_fees_of_pending_transactions_must_be_payable() -> None:
    ledger = Ledger()
    ledger.accounts[ALICE.address] = Account(balance=25)
    pool = make_pool(ledger)
    admit(pool, transfer(ALICE, 0).raw)
    admit(pool, transfer(ALICE, 1).raw)
    assert code_of(pool, transfer(ALICE, 2)) == "insufficient_funds"


def test_a_full_pool_evicts_the_lowest_fee_tail_for_a_better_fee() -> None:
    pool = make_pool(Ledger(), max_transactions=2)
    cheap, dear = transfer(ALICE, 0, fee=10), transfer(BOB, 0, fee=50)
    admit(pool, cheap.raw)
    admit(pool, dear.raw)
    assert code_of(pool, transfer(CAROL, 0, fee=10)) == "mempool_full"
    richer = transfer(CAROL, 0, fee=100)
    admit(pool, richer.raw)
    assert pool.get(cheap.hash) is None and pool.get(dear.hash) is not None and pool.get(richer.hash) is not None
    assert len(pool) == 2


def test_expiry_drops_old_transactions_and_their_successors() -> None:
    pool = make_pool(Ledger(), ttl_ms=1000)
    first, second = transfer(ALICE, 0), transfer(ALICE, 1)
    admit(pool, first.raw, now_ms=0)
    admit(pool, second.raw, now_ms=900)
    admit(pool, transfer(BOB, 0).raw, now_ms=900)
    dropped = pool.expire(now_ms=1500)
    assert {tx.hash for tx in dropped} == {first.hash, second.hash}
    assert len(pool) == 1 and pool.size_bytes == len(transfer(BOB, 0).raw)


def test_recheck_after_a_block() -> None:
    ledger = Ledger()
    pool = make_pool(ledger)
    included, waiting = transfer(ALICE, 0), transfer(ALICE, 1)
    admit(pool, included.raw)
    admit(pool, waiting.raw)
    admit(pool, transfer(BOB, 0).raw)
    ledger.accounts[ALICE.address] = Account(balance=1_000_000, nonce=1)
    ledger.accounts[BOB.address] = Account(balance=0)  # spent elsewhere: cannot pay the fee any more
    ledger.committed.add(included.hash)
    pool.remove_committed([included])
    assert [tx.hash for tx in pool.ready()] == [waiting.hash]
    assert len(pool) == 1


def test_signatures_are_checked_once_and_remembered() -> None:
    pool = make_pool(Ledger())
    tx = transfer(ALICE, 0)
    assert not pool.signature_known_valid(tx.hash)
    admit(pool, tx.raw)
    assert pool.signature_known_valid(tx.hash)
    good = transfer(BOB, 0)
    forged = codec.encode({**good.to_map(), "sig": bytes([good.sig[0] ^ 1]) + good.sig[1:]})
    with pytest.raises(AdmissionError) as raised:
        admit(pool, forged)
    assert raised.value.code == "bad_signature"


def test_pending_lists_every_transaction_with_its_admission_time_in_readmission_order() -> None:
    """What the mempool journal writes (node/mempool_journal.py): senders by first arrival,
    each in nonce order, future nonces included, with the time each was admitted."""
    pool = make_pool(Ledger())
    for now_ms, tx in enumerate((transfer(ALICE, 3), transfer(BOB, 0), transfer(ALICE, 0), transfer(ALICE, 1))):
        admit(pool, tx.raw, now_ms=100 + now_ms)
    listed = [(tx.sender, tx.nonce, admitted_ms) for tx, admitted_ms in pool.pending()]
    assert listed == [(ALICE.address, 0, 102), (ALICE.address, 1, 103), (ALICE.address, 3, 100), (BOB.address, 0, 101)]
    again = make_pool(Ledger())
    for tx, admitted_ms in pool.pending():
        admit(again, tx.raw, admitted_ms)
    assert list(again.pending()) == list(pool.pending())
