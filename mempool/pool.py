"""The mempool: admitted transactions waiting for a block (PROTOCOL R10, R11).

Admission runs every check of R10 once per transaction: the stateless checks of
`marketplace_tx.rules.admission` give a `Verdict` (computed wherever the node likes:
node/admission.py), then `Mempool.admit` runs the stateful ones against the committed
state (duplicates, the signature's verdict, nonce window, fee payable, capacity). Pending transactions are kept per
sender in nonce order; only a run of consecutive nonces starting at the sender's next
nonce is *ready* for a block. Future nonces (up to +64) wait for the gap to fill.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.accounts import Account
from marketplace_tx.rules.admission import BAD_SIGNATURE_MESSAGE, Verdict

NONCE_WINDOW = 64
"""How far above the sender's next nonce a transaction may be admitted (R10)."""


@dataclass(frozen=True)
class MempoolLimits:
    """Capacity of the mempool."""

    max_transactions: int = 50_000
    """Most transactions held at once."""
    max_bytes: int = 128 * 1024 * 1024
    """Most bytes of transactions held at once."""
    ttl_ms: int = 10 * 60 * 1000
    """A transaction still pending this long after admission is dropped (clients resubmit)."""
    signature_cache_size: int = 200_000
    """How many verified transaction hashes are remembered, so a block holding them skips re-verification."""


@dataclass
class _SenderQueue:
    """One sender's pending transactions by nonce."""

    first_arrival: int
    """Arrival sequence of the oldest pending transaction; orders senders in blocks."""
    by_nonce: dict[int, Transaction] = field(default_factory=dict)
    fees: int = 0
    """Sum of the fees of `by_nonce` (kept up to date, so admission need not add them up)."""


def _fee_rate(tx: Transaction) -> int:
    """Fee per 1,000 bytes: what eviction compares."""
    return tx.fee * 1000 // len(tx.raw)


class Mempool:
    """Pending transactions with admission, readiness and removal after blocks."""

    def __init__(
        self,
        chain_id: str,
        params: Params,
        account_of: Callable[[bytes], Account],
        is_committed: Callable[[bytes], bool],
        limits: MempoolLimits | None = None,
    ) -> None:
        self.chain_id = chain_id
        """The chain whose transactions are admitted."""
        self.params = params
        """The chain's parameters (min_fee, max_tx_bytes …)."""
        self.limits = limits or MempoolLimits()
        """Capacity limits."""
        self._account_of = account_of
        self._is_committed = is_committed
        self._by_hash: dict[bytes, Transaction] = {}
        self._admitted_at: dict[bytes, int] = {}
        self._senders: dict[bytes, _SenderQueue] = {}
        self._bytes = 0
        self._arrivals = itertools.count()
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._admitted_floor: int | None = None
        """No pending transaction was admitted before this time (a lower bound), so
        `expire` need not look at each one while nothing can have expired."""

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def size_bytes(self) -> int:
        """Total bytes of pending transactions."""
        return self._bytes

    def get(self, tx_hash: bytes) -> Transaction | None:
        """A pending transaction by hash."""
        return self._by_hash.get(tx_hash)

    def signature_known_valid(self, tx_hash: bytes) -> bool:
        """True if this node already verified the signature of `tx_hash` (admission cache):
        admission passes it to `admission_verdict` so that a resubmitted transaction is not
        verified again, and blocks holding it skip the check. Safe in worker threads."""
        return tx_hash in self._verified

    def _remember_verified(self, tx_hash: bytes) -> None:
        self._verified[tx_hash] = None
        if len(self._verified) > self.limits.signature_cache_size:
            self._verified.popitem(last=False)

    def admit(self, verdict: Verdict, now_ms: int = 0) -> Transaction:
        """Admit a transaction given its stateless verdict (`admission_verdict`), or raise
        `AdmissionError` (R10).

        Every stateful check runs here, once, in R10's order after the stateless ones:
        duplicate (pending or final), the signature's verdict, nonce window and nonce
        taken, fees payable, then room (evicting lower-fee transactions if it can).
        """
        tx = verdict.transaction
        if tx is None:
            raise AdmissionError(verdict.error_code, verdict.error_message)
        if tx.hash in self._by_hash or self._is_committed(tx.hash):  # the one duplicate check
            raise AdmissionError("duplicate", "this transaction is already known")
        if not verdict.signature_valid:
            raise AdmissionError("bad_signature", BAD_SIGNATURE_MESSAGE)
        self._remember_verified(tx.hash)
        self.check_against_state(tx)
        self._make_room(tx)
        queue = self._senders.get(tx.sender)
        if queue is None:
            queue = self._senders[tx.sender] = _SenderQueue(next(self._arrivals))
        queue.by_nonce[tx.nonce] = tx
        queue.fees += tx.fee
        self._by_hash[tx.hash] = tx
        self._admitted_at[tx.hash] = now_ms
        if self._admitted_floor is None or now_ms < self._admitted_floor:
            self._admitted_floor = now_ms
        self._bytes += len(tx.raw)
        return tx

    def _overflows(self, count: int, size: int, tx: Transaction) -> bool:
        """True if a pool of `count` transactions and `size` bytes has no room for `tx`."""
        return count >= self.limits.max_transactions or size + len(tx.raw) > self.limits.max_bytes

    def _make_room(self, tx: Transaction) -> None:
        """Evict lower-fee transactions for a better-paying one, or `mempool_full`.

        Only the last pending nonce of a sender is evictable, so no queue gets a gap.
        The victims are chosen first and removed only once enough room is found, so a
        newcomer that is refused evicts nothing.
        """
        count, size = len(self._by_hash), self._bytes
        if not self._overflows(count, size, tx):
            return
        rate = _fee_rate(tx)
        tails: dict[bytes, list[Transaction]] = {}
        candidates: list[tuple[int, int, int, bytes]] = []
        for sender, queue in self._senders.items():
            if sender == tx.sender:
                continue
            tails[sender] = [queue.by_nonce[nonce] for nonce in sorted(queue.by_nonce, reverse=True)]
            candidates.append((*self._eviction_rank(tails[sender][0]), 0, sender))
        heapq.heapify(candidates)
        victims: list[Transaction] = []
        while self._overflows(count, size, tx):
            if not candidates:
                raise AdmissionError("mempool_full", "the mempool is full; retry later")
            victim_rate, _, depth, sender = heapq.heappop(candidates)
            if victim_rate >= rate:
                raise AdmissionError("mempool_full", "the mempool is full of better-paying transactions; retry later or raise the fee")
            victim = tails[sender][depth]
            victims.append(victim)
            count, size = count - 1, size - len(victim.raw)
            if depth + 1 < len(tails[sender]):
                heapq.heappush(candidates, (*self._eviction_rank(tails[sender][depth + 1]), depth + 1, sender))
        for victim in victims:
            self._remove(victim)

    def _eviction_rank(self, tx: Transaction) -> tuple[int, int]:
        """Evicted first: the lowest fee per byte, then the most recently admitted."""
        return _fee_rate(tx), -self._admitted_at[tx.hash]

    def expire(self, now_ms: int) -> list[Transaction]:
        """Drop transactions pending longer than `ttl_ms`, with every later nonce of their senders."""
        if self._admitted_floor is None or now_ms - self._admitted_floor <= self.limits.ttl_ms:
            return []  # none admitted early enough to have expired
        self._admitted_floor = min(self._admitted_at.values(), default=None)
        expired = [tx for tx_hash, tx in self._by_hash.items() if now_ms - self._admitted_at[tx_hash] > self.limits.ttl_ms]
        dropped = []
        for tx in expired:
            queue = self._senders.get(tx.sender)
            if queue is None:
                continue
            for nonce in sorted(n for n in queue.by_nonce if n >= tx.nonce):
                dropped.append(queue.by_nonce[nonce])
                self._remove(queue.by_nonce[nonce])
                if tx.sender not in self._senders:
                    break
        return dropped

    def check_against_state(self, tx: Transaction) -> None:
        """The stateful admission checks against the sender's committed account: nonce
        window, nonce taken, fees payable (R10)."""
        account = self._account_of(tx.sender)
        if tx.nonce < account.nonce:
            raise AdmissionError(
                "bad_nonce", f"nonce: {tx.nonce} was used; the sender's next nonce is {account.nonce}"
            )
        if tx.nonce > account.nonce + NONCE_WINDOW:
            raise AdmissionError(
                "bad_nonce",
                f"nonce: {tx.nonce} is more than {NONCE_WINDOW} above the next nonce {account.nonce}",
            )
        queue = self._senders.get(tx.sender)
        if queue is not None and tx.nonce in queue.by_nonce:
            raise AdmissionError("bad_nonce", f"nonce: {tx.nonce} is already pending for this sender")
        pending_fees = queue.fees if queue else 0
        if account.balance < pending_fees + tx.fee:
            raise AdmissionError(
                "insufficient_funds",
                f"fee: balance {account.balance} cannot pay {tx.fee} after pending fees {pending_fees}",
            )

    def pending_nonce(self, sender: bytes, committed_nonce: int) -> int:
        """The nonce the sender's next new transaction should carry, counting ready ones."""
        queue = self._senders.get(sender)
        nonce = committed_nonce
        while queue is not None and nonce in queue.by_nonce:
            nonce += 1
        return nonce

    def pending(self) -> Iterator[tuple[Transaction, int]]:
        """Every pending transaction with its admission time (ms), senders by first
        arrival, each in nonce order: the order in which to admit them again (the
        mempool journal, node/mempool_journal.py)."""
        queues = sorted(self._senders.values(), key=lambda queue: queue.first_arrival)
        for queue in queues:
            for nonce in sorted(queue.by_nonce):
                tx = queue.by_nonce[nonce]
                yield tx, self._admitted_at[tx.hash]

    def has_ready(self) -> bool:
        """True iff some transaction could go into the next block."""
        return any(
            self._account_of(sender).nonce in queue.by_nonce for sender, queue in self._senders.items()
        )

    def ready(self) -> Iterator[Transaction]:
        """Ready transactions in block order: senders by first arrival, each in nonce order."""
        queues = sorted(self._senders.items(), key=lambda item: item[1].first_arrival)
        for sender, queue in queues:
            nonce = self._account_of(sender).nonce
            while nonce in queue.by_nonce:
                yield queue.by_nonce[nonce]
                nonce += 1

    def remove_committed(
        self, transactions: list[Transaction], changed_accounts: Collection[bytes] | None = None
    ) -> None:
        """Drop transactions that a block included, then re-check the rest (R10).

        `changed_accounts`, if given, holds every address whose account the block
        changed: only their senders are re-checked, since admission already checked the
        others against the accounts they still have. The verified signatures of the
        block's transactions are forgotten: a final transaction resubmitted is answered
        `duplicate` from the committed index whatever its signature's verdict, so keeping
        them would only hold memory.
        """
        verified = self._verified
        for tx in transactions:
            self._remove(tx)
            verified.pop(tx.hash, None)
        if changed_accounts is None:
            self.recheck()
        else:
            self.recheck([sender for sender in changed_accounts if sender in self._senders])

    def recheck(self, senders: Collection[bytes] | None = None) -> None:
        """Drop every transaction that can no longer be admitted against the new state
        (of every sender, or of `senders`)."""
        for sender in list(self._senders) if senders is None else senders:
            queue = self._senders.get(sender)
            if queue is None:
                continue
            account = self._account_of(sender)
            fees = 0
            for nonce in sorted(queue.by_nonce):
                tx = queue.by_nonce[nonce]
                if nonce < account.nonce:  # taken by a committed transaction: its fee is not pending
                    self._remove(tx)
                elif fees + tx.fee > account.balance:
                    self._remove(tx)
                else:
                    fees += tx.fee

    def _remove(self, tx: Transaction) -> None:
        if self._by_hash.pop(tx.hash, None) is None:
            return
        self._admitted_at.pop(tx.hash, None)
        self._bytes -= len(tx.raw)
        queue = self._senders[tx.sender]
        queue.by_nonce.pop(tx.nonce, None)
        queue.fees -= tx.fee
        if not queue.by_nonce:
            del self._senders[tx.sender]
