"""The mempool against a plain model of its rules, over random histories (issue 13; R10, R11).

The model keeps each sender's pending transactions in a dict and recomputes everything
by brute force at every step: readiness, the per-sender and future limits, eviction
(each step the lowest (future before ready, fee rate, most recent) last nonce of another
sender, only if it ranks below the newcomer), both TTLs, and the block order (the best
fee rate among the senders' next ready transactions, then first arrival). The pool's
heaps must give exactly its answers, contents, block order and counts.
"""

from __future__ import annotations

import itertools
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.accounts import Account
from mempool.pool import NONCE_WINDOW
from mempool.sender_queue import FUTURE, READY, fee_rate
from tests.unit.mempool.test_mempool import CHAIN_ID, Ledger, make_pool
from tests.unit.mempool.test_mempool_admission_order import SENDERS, admit_known

KEYS = (*SENDERS, *(KeyPair.from_seed(bytes([60 + index]) * 32) for index in range(2)))
LIMITS = {"max_transactions": 7, "max_bytes": 1_400, "max_pending_per_sender": 4, "max_future_per_sender": 2,
          "max_future": 3, "ttl_ms": 1_000, "future_ttl_ms": 300}


@cache
def cached_transfer(sender_index: int, nonce: int, fee: int, memo: int) -> Transaction:
    payload = {"to": KEYS[0].address, "amount": 1, **({"memo": "m" * memo} if memo else {})}
    return sign_transaction(KEYS[sender_index], CHAIN_ID, "transfer", payload, nonce, fee)


class Model:
    """The rules of the pool, by brute force."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.pending: dict[bytes, dict[int, tuple[Transaction, int]]] = {}
        self.arrival: dict[bytes, int] = {}
        self.arrivals = itertools.count()

    def ready_end(self, sender: bytes) -> int:
        nonce = self.ledger.account(sender).nonce
        while nonce in self.pending.get(sender, {}):
            nonce += 1
        return nonce

    def rank(self, tx: Transaction) -> int:
        return READY if tx.nonce < self.ready_end(tx.sender) else FUTURE

    def all(self) -> list[tuple[Transaction, int]]:
        return [entry for queue in self.pending.values() for entry in queue.values()]

    def admit(self, tx: Transaction, now_ms: int) -> str:
        account = self.ledger.account(tx.sender)
        queue = self.pending.get(tx.sender, {})
        if any(entry[0].hash == tx.hash for entry in self.all()) or tx.hash in self.ledger.committed:
            return "duplicate"
        if tx.nonce < account.nonce or tx.nonce > account.nonce + NONCE_WINDOW or tx.nonce in queue:
            return "bad_nonce"
        if account.balance < sum(entry[0].fee for entry in queue.values()) + tx.fee:
            return "insufficient_funds"
        rank = READY if tx.nonce == self.ready_end(tx.sender) else FUTURE
        future = sum(1 for entry in queue.values() if self.rank(entry[0]) == FUTURE)
        if len(queue) >= LIMITS["max_pending_per_sender"] or (rank == FUTURE and future >= LIMITS["max_future_per_sender"]):
            return "mempool_full"
        victims = self.victims(tx, rank)
        if victims is None:
            return "mempool_full"
        for victim in victims:
            self.remove(victim)
        if tx.sender not in self.pending:
            self.pending[tx.sender] = {}
            self.arrival[tx.sender] = next(self.arrivals)
        self.pending[tx.sender][tx.nonce] = (tx, now_ms)
        return "ok"

    def victims(self, tx: Transaction, rank: int) -> list[Transaction] | None:
        left = {sender: dict(queue) for sender, queue in self.pending.items() if sender != tx.sender}
        count = len(self.all())
        future_full = rank == FUTURE and sum(1 for entry in self.all() if self.rank(entry[0]) == FUTURE) >= LIMITS["max_future"]
        chosen = []
        size = sum(len(entry[0].raw) for entry in self.all())
        while future_full or count >= LIMITS["max_transactions"] or size + len(tx.raw) > LIMITS["max_bytes"]:
            tails = [queue[max(queue)] for queue in left.values() if queue]
            if not tails:
                return None
            victim, admitted = min(tails, key=lambda entry: (self.rank(entry[0]), fee_rate(entry[0]), -entry[1]))
            victim_rank = self.rank(victim)
            if (victim_rank, fee_rate(victim)) >= (rank, fee_rate(tx)) or (future_full and victim_rank != FUTURE):
                return None
            chosen.append(victim)
            del left[victim.sender][victim.nonce]
            count, size = count - 1, size - len(victim.raw)
            future_full = future_full and victim_rank != FUTURE
        return chosen

    def remove(self, tx: Transaction) -> None:
        queue = self.pending[tx.sender]
        del queue[tx.nonce]
        if not queue:
            del self.pending[tx.sender]

    def block(self, address: bytes) -> None:
        account = self.ledger.account(address)
        queue = self.pending.get(address, {})
        fees = 0
        for nonce in sorted(queue):
            tx = queue[nonce][0]
            if nonce < account.nonce or fees + tx.fee > account.balance:
                self.remove(tx)
            else:
                fees += tx.fee

    def expire(self, now_ms: int) -> set[bytes]:
        dropped: set[bytes] = set()
        for limit, only_future in ((LIMITS["ttl_ms"], False), (LIMITS["future_ttl_ms"], True)):
            old = [tx for tx, admitted in self.all()
                   if now_ms - admitted > limit and (not only_future or self.rank(tx) == FUTURE)]
            for tx in old:
                for nonce in sorted(self.pending.get(tx.sender, {})):
                    if nonce >= tx.nonce:
                        dropped.add(self.pending[tx.sender][nonce][0].hash)
                        self.remove(self.pending[tx.sender][nonce][0])
        return dropped

    def ready(self) -> list[bytes]:
        heads = {sender: self.ledger.account(sender).nonce for sender in self.pending}
        order = []
        while True:
            candidates = [(fee_rate(self.pending[sender][nonce][0]), -self.arrival[sender], sender)
                          for sender, nonce in heads.items() if nonce in self.pending[sender]]
            if not candidates:
                return order
            _, _, sender = max(candidates)
            order.append(self.pending[sender][heads[sender]][0].hash)
            heads[sender] += 1


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5), st.integers(0, 4), st.sampled_from([10, 11, 20, 40, 90, 300]),
                  st.sampled_from([0, 0, 0, 250])),
        st.tuples(st.just("block"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("time"), st.integers(1, 400)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_the_pool_answers_holds_and_orders_exactly_as_the_model(operations: list[tuple]) -> None:
    ledger = Ledger()
    ledger.accounts.update({key.address: Account(balance=2_000) for key in KEYS})
    pool, model = make_pool(ledger, **LIMITS), Model(ledger)
    now_ms = 0
    for operation in operations:
        now_ms += 1  # distinct admission times: eviction never meets a tie
        if operation[0] == "add":
            _, sender_index, offset, fee, memo = operation
            tx = cached_transfer(sender_index, ledger.account(KEYS[sender_index].address).nonce + offset, fee, memo)
            try:
                admit_known(pool, tx.raw, now_ms)
                got = "ok"
            except AdmissionError as error:
                got = error.code
            assert got == model.admit(tx, now_ms), operation
        elif operation[0] == "block":
            _, sender_index, from_pool = operation
            address = KEYS[sender_index].address
            account = ledger.account(address)
            included = [tx for tx in pool.ready() if tx.sender == address][:1] if from_pool else []
            ledger.committed.update(tx.hash for tx in included)
            ledger.accounts[address] = Account(balance=max(0, account.balance - 45), nonce=account.nonce + 1)
            pool.remove_committed(included, [address])
            model.block(address)
        else:
            now_ms += operation[1]
            assert {tx.hash for tx in pool.expire(now_ms)} == model.expire(now_ms)
        assert sorted((tx.sender, tx.nonce, tx.hash) for tx, _ in pool.pending()) == sorted(
            (tx.sender, tx.nonce, tx.hash) for tx, _ in model.all())
        assert [tx.hash for tx in pool.ready()] == model.ready()
        assert pool.has_ready() == bool(model.ready())
        assert pool.future_count == sum(1 for tx, _ in model.all() if model.rank(tx) == FUTURE)
