"""The mempool: admitted transactions waiting for a block (PROTOCOL R10, R11).

Admission runs every check of R10 once per transaction: the stateless checks of
`marketplace_tx.rules.admission` give a `Verdict` (computed wherever the node likes:
node/admission.py), then `Mempool.admit` runs the stateful ones against the committed
state (duplicates, the signature's verdict, nonce window, fee payable, per-sender
limits, capacity). Pending transactions are kept per sender in nonce order
(mempool/sender_queue.py): a run of consecutive nonces from the sender's next nonce is
*ready* for a block; nonces above a gap (up to +64) are *future* and wait for it to fill.

A pool no anonymous client can clog (issue 13; docs/security.md): future transactions
never pay a fee while they wait, so they are limited per sender (`max_future_per_sender`)
and in total (`max_future`), expire after `future_ttl_ms`, are evicted before any ready
transaction and never evict one. Admission, eviction and expiry cost O(log n) through
two lazy heaps (mempool/indexes.py); blocks take ready transactions by fee rate across
senders, nonce order within each (`ready`).
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
from mempool.indexes import AgeEntry, AgeIndex, TailEntry, TailIndex
from mempool.sender_queue import FUTURE, READY, SenderQueue, fee_rate

NONCE_WINDOW = 64
"""How far above the sender's next nonce a transaction may be admitted (R10)."""


@dataclass(frozen=True)
class MempoolLimits:
    """Capacity of the mempool (`[mempool]` in the node's config)."""

    max_transactions: int = 50_000
    """Most transactions held at once."""
    max_bytes: int = 128 * 1024 * 1024
    """Most bytes of transactions held at once."""
    ttl_ms: int = 10 * 60 * 1000
    """A transaction still pending this long after admission is dropped (clients resubmit)."""
    signature_cache_size: int = 200_000
    """How many verified transaction hashes are remembered, so a block holding them skips re-verification."""
    max_pending_per_sender: int = NONCE_WINDOW + 1
    """Most pending transactions of one sender (ready and future); more is `mempool_full`.
    The default, 65, is the whole nonce window of R10 (next … next + 64), so that every
    nonce R10 admits can be pending at once."""
    max_future_per_sender: int = 16
    """Most future transactions (nonce above a gap) of one sender; more is `mempool_full`."""
    max_future: int = 5_000
    """Most future transactions in the whole pool; beyond, a future newcomer must evict a
    future one of a lower fee rate, else `mempool_full`."""
    future_ttl_ms: int = 60 * 1000
    """A transaction still future this long after admission is dropped (with its sender's later nonces)."""


@dataclass
class ScreenedAhead:
    """One sender's transactions screened earlier in the same gossiped message (`Mempool.screen`)."""

    nonces: set[int] = field(default_factory=set)
    """Their nonces."""
    fees: int = 0
    """The sum of their fees."""
    future: int = 0
    """How many of them would be future."""
    run_end: int = -1
    """The nonce that would extend the sender's ready run, counting them."""


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
        self.last_promoted: list[Transaction] = []
        """The future transactions that the last `admit` made ready (it filled their gap):
        admission relays them now, since future transactions are not relayed."""
        self._account_of = account_of
        self._is_committed = is_committed
        self._by_hash: dict[bytes, Transaction] = {}
        self._admitted_at: dict[bytes, int] = {}
        self._senders: dict[bytes, SenderQueue] = {}
        self._bytes = 0
        self._ready_total = 0
        self._arrivals = itertools.count()
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._tails = TailIndex(self._tail_is_current)
        self._ages = AgeIndex(self._age_is_current)
        self._future_ages = AgeIndex(self._future_age_is_current)

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def size_bytes(self) -> int:
        """Total bytes of pending transactions."""
        return self._bytes

    @property
    def future_count(self) -> int:
        """How many pending transactions are future (above a gap in their sender's nonces)."""
        return len(self._by_hash) - self._ready_total

    def get(self, tx_hash: bytes) -> Transaction | None:
        """A pending transaction by hash."""
        return self._by_hash.get(tx_hash)

    def knows(self, tx_hash: bytes) -> bool:
        """True if `tx_hash` is pending or final (admission would say `duplicate`)."""
        return tx_hash in self._by_hash or self._is_committed(tx_hash)

    def is_ready(self, tx_hash: bytes) -> bool:
        """True if `tx_hash` is pending and ready (a block could include it in nonce order)."""
        tx = self._by_hash.get(tx_hash)
        return tx is not None and self._senders[tx.sender].rank_of(tx.nonce) == READY

    def signature_known_valid(self, tx_hash: bytes) -> bool:
        """True if this node already verified the signature of `tx_hash` (admission cache):
        admission passes it to `admission_verdict` so that a resubmitted transaction is not
        verified again, and blocks holding it skip the check. Safe in worker threads."""
        return tx_hash in self._verified

    def _remember_verified(self, tx_hash: bytes) -> None:
        self._verified[tx_hash] = None
        if len(self._verified) > self.limits.signature_cache_size:
            self._verified.popitem(last=False)

    # --- admission -------------------------------------------------------------------

    def admit(self, verdict: Verdict, now_ms: int = 0) -> Transaction:
        """Admit a transaction given its stateless verdict (`admission_verdict`), or raise
        `AdmissionError` (R10).

        Every stateful check runs here, once, in R10's order after the stateless ones:
        duplicate (pending or final), the signature's verdict, nonce window and nonce
        taken, fees payable, then the per-sender limits and room (evicting transactions
        of a lower rank if it can): `mempool_full`.
        """
        tx = verdict.transaction
        if tx is None:
            raise AdmissionError(verdict.error_code, verdict.error_message)
        self._check_known(tx)
        if not verdict.signature_valid:
            raise AdmissionError("bad_signature", BAD_SIGNATURE_MESSAGE)
        self._remember_verified(tx.hash)
        account, _, victims = self._plan(tx, evict=True)
        for victim in victims:
            self._remove(victim)
        self._insert(tx, account.nonce, now_ms)
        return tx

    def screen(self, tx: Transaction, ahead: dict[bytes, ScreenedAhead] | None = None) -> None:
        """Every stateful check of `admit` except the signature's, changing nothing in the
        pool: raise the `AdmissionError` admission would (duplicate, nonce, funds, limits,
        room). Gossiped transactions are screened before their signature is verified, so
        a peer cannot make this node verify signatures it would refuse anyway (issue 13).

        `ahead`, if given, holds per sender the transactions screened before in the same
        message, which will be admitted before `tx`: they count as pending (their nonces,
        fees and readiness), and `tx` is added to it if it passes."""
        self._check_known(tx)
        before = None if ahead is None else ahead.setdefault(tx.sender, ScreenedAhead())
        account, rank, _ = self._plan(tx, evict=False, ahead=before)
        if before is not None:
            before.nonces.add(tx.nonce)
            before.fees += tx.fee
            if rank == FUTURE:
                before.future += 1
                return
            queue = self._senders.get(tx.sender)
            run_end = tx.nonce + 1
            while (queue is not None and run_end in queue.by_nonce) or run_end in before.nonces:
                if run_end in before.nonces:
                    before.future -= 1  # screened as future, made ready by `tx`
                run_end += 1
            before.run_end = run_end

    def _check_known(self, tx: Transaction) -> None:
        if self.knows(tx.hash):  # the one duplicate check
            raise AdmissionError("duplicate", "this transaction is already known")

    def _plan(
        self, tx: Transaction, evict: bool, ahead: ScreenedAhead | None = None
    ) -> tuple[Account, int, list[Transaction]]:
        """The stateful checks after the signature: the sender's account, the rank `tx`
        would have, and the transactions to evict for it (none if it fits); raise
        `AdmissionError`. `ahead`: see `screen`."""
        account = self._check_state(tx, ahead)
        queue = self._senders.get(tx.sender)
        if queue is None:
            rank, pending, future = (READY if tx.nonce == account.nonce else FUTURE), 0, 0
        else:
            rank, pending, future = queue.newcomer_rank(tx.nonce), len(queue.by_nonce), queue.future_count
        if ahead is not None:
            if ahead.run_end < 0:
                ahead.run_end = queue.ready_end if queue is not None else account.nonce
            rank = READY if tx.nonce == ahead.run_end else FUTURE
            pending, future = pending + len(ahead.nonces), future + ahead.future
        limits = self.limits
        if pending >= limits.max_pending_per_sender:
            raise AdmissionError(
                "mempool_full", f"sender: {pending} transactions pending, the most one sender may have; retry later"
            )
        if rank == FUTURE and future >= limits.max_future_per_sender:
            raise AdmissionError(
                "mempool_full",
                f"nonce: {future} transactions of this sender already wait for a missing nonce; send it first",
            )
        return account, rank, self._choose_victims(tx, rank, evict)

    def _overflows(self, count: int, size: int, tx: Transaction) -> bool:
        """True if a pool of `count` transactions and `size` bytes has no room for `tx`."""
        return count >= self.limits.max_transactions or size + len(tx.raw) > self.limits.max_bytes

    def _choose_victims(self, tx: Transaction, rank: int, evict: bool) -> list[Transaction]:
        """The transactions to evict so that `tx` (of `rank`) fits, or `mempool_full`.

        Only a sender's last pending nonce is evictable, so no queue gets a gap; future
        before ready, then the lowest fee rate, then the most recent; and only victims
        of a lower (rank, fee rate) than the newcomer: a future newcomer never evicts a
        ready transaction. The victims are chosen first and removed by the caller only
        once enough room is found, so a newcomer that is refused evicts nothing. Cost:
        O(v log n) for v victims (the index's heap), never a pass over the senders.
        """
        count, size = len(self._by_hash), self._bytes
        future_full = rank == FUTURE and self.future_count >= self.limits.max_future
        if not future_full and not self._overflows(count, size, tx):
            return []
        newcomer = (rank, fee_rate(tx))
        popped: list[TailEntry] = []
        deeper: list[tuple[int, int, int, int, bytes, int]] = []  # (rank, rate, -admitted, seq, sender, nonce)
        order: dict[bytes, list[int]] = {}
        taken: dict[bytes, int] = {}
        sequence = itertools.count()
        skipped = {tx.sender}
        head: TailEntry | None = None
        victims: list[Transaction] = []
        try:
            while future_full or self._overflows(count, size, tx):
                if head is None:
                    head = self._next_tail(popped, skipped)
                if deeper and (head is None or deeper[0][:3] < head[:3]):
                    victim_rank, victim_rate, _, _, sender, nonce = heapq.heappop(deeper)
                    victim = self._senders[sender].by_nonce[nonce]
                elif head is not None:
                    victim_rank, victim_rate, _, _, sender, tx_hash = head
                    victim, head = self._by_hash[tx_hash], None
                    skipped.add(sender)
                else:
                    raise AdmissionError("mempool_full", "the mempool is full; retry later")
                if (victim_rank, victim_rate) >= newcomer:  # so a future newcomer never evicts a ready one
                    raise AdmissionError("mempool_full", self._full_message(future_full))
                victims.append(victim)
                count, size = count - 1, size - len(victim.raw)
                future_full = future_full and victim_rank != FUTURE
                queue = self._senders[sender]
                nonces = order.setdefault(sender, queue.nonces_from_top())
                taken[sender] = depth = taken.get(sender, 0) + 1
                if depth < len(nonces):
                    below = queue.by_nonce[nonces[depth]]
                    heapq.heappush(deeper, (queue.rank_of(below.nonce), fee_rate(below),
                                            -self._admitted_at[below.hash], next(sequence), sender, below.nonce))
        finally:
            self._tails.restore(popped)  # the victims' entries go stale once they are removed
        return victims if evict else []

    def _full_message(self, future_full: bool) -> str:
        if future_full:
            return (f"nonce: the mempool holds its most transactions waiting for a missing nonce "
                    f"({self.limits.max_future}); send the missing nonces first or raise the fee")
        return "the mempool is full of better-paying transactions; retry later or raise the fee"

    def _next_tail(self, popped: list[TailEntry], skipped: set[bytes]) -> TailEntry | None:
        """The lowest tail of a sender not in `skipped`; every entry popped is kept in `popped`."""
        while True:
            entry = self._tails.pop_lowest()
            if entry is None:
                return None
            popped.append(entry)
            if entry[4] not in skipped:
                return entry

    def _insert(self, tx: Transaction, next_nonce: int, now_ms: int) -> None:
        queue = self._senders.get(tx.sender)
        if queue is None:
            queue = self._senders[tx.sender] = SenderQueue(next(self._arrivals), next_nonce)
        self._ready_total -= queue.ready_count
        self.last_promoted = queue.add(tx)
        self._ready_total += queue.ready_count
        self._by_hash[tx.hash] = tx
        self._admitted_at[tx.hash] = now_ms
        self._bytes += len(tx.raw)
        self._ages.add(now_ms, tx.hash)
        if queue.rank_of(tx.nonce) == FUTURE:
            self._future_ages.add(now_ms, tx.hash)
        self._index_tail(tx.sender, queue)
        self._compact()

    def check_against_state(self, tx: Transaction) -> None:
        """The stateful admission checks against the sender's committed account: nonce
        window, nonce taken, fees payable (R10)."""
        self._check_state(tx)

    def _check_state(self, tx: Transaction, ahead: ScreenedAhead | None = None) -> Account:
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
        if (queue is not None and tx.nonce in queue.by_nonce) or (ahead is not None and tx.nonce in ahead.nonces):
            raise AdmissionError("bad_nonce", f"nonce: {tx.nonce} is already pending for this sender")
        pending_fees = (queue.fees if queue else 0) + (ahead.fees if ahead is not None else 0)
        if account.balance < pending_fees + tx.fee:
            raise AdmissionError(
                "insufficient_funds",
                f"fee: balance {account.balance} cannot pay {tx.fee} after pending fees {pending_fees}",
            )
        return account

    # --- reading ---------------------------------------------------------------------

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
        queues = sorted(self._senders.values(), key=lambda queue: queue.arrival)
        for queue in queues:
            for nonce in sorted(queue.by_nonce):
                tx = queue.by_nonce[nonce]
                yield tx, self._admitted_at[tx.hash]

    def has_ready(self) -> bool:
        """True iff some transaction could go into the next block."""
        return self._ready_total > 0

    def ready(self, limit: int | None = None) -> Iterator[Transaction]:
        """Ready transactions in block order (at most `limit`): the highest fee rate first
        among each sender's next ready transaction, nonce order within a sender, equal
        rates by the senders' first arrival. O(s + k log s) for k transactions of s senders."""
        heap = [(-fee_rate(queue.by_nonce[queue.next_nonce]), queue.arrival, queue.next_nonce, sender)
                for sender, queue in self._senders.items() if queue.ready_count]
        heapq.heapify(heap)
        given = 0
        while heap and (limit is None or given < limit):
            _, arrival, nonce, sender = heapq.heappop(heap)
            queue = self._senders[sender]
            yield queue.by_nonce[nonce]
            given += 1
            if nonce + 1 < queue.ready_end:
                heapq.heappush(heap, (-fee_rate(queue.by_nonce[nonce + 1]), arrival, nonce + 1, sender))

    # --- after blocks and time -------------------------------------------------------

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
        (of every sender, or of `senders`), and move each sender's ready run to its new
        next nonce."""
        for sender in list(self._senders) if senders is None else senders:
            queue = self._senders.get(sender)
            if queue is None:
                continue
            account = self._account_of(sender)
            was_ready_below = queue.ready_end
            fees = 0
            for nonce in sorted(queue.by_nonce):
                tx = queue.by_nonce[nonce]
                if nonce < account.nonce:  # taken by a committed transaction: its fee is not pending
                    self._remove(tx)
                elif fees + tx.fee > account.balance:
                    self._remove(tx)
                else:
                    fees += tx.fee
            queue = self._senders.get(sender)
            if queue is None:
                continue
            self._ready_total -= queue.ready_count
            queue.rebase(account.nonce)
            self._ready_total += queue.ready_count
            for tx in queue.future():
                if tx.nonce < was_ready_below:  # ready before, future now: its future clock starts
                    self._future_ages.add(self._admitted_at[tx.hash], tx.hash)
            self._index_tail(sender, queue)
        self._compact()

    def expire(self, now_ms: int) -> list[Transaction]:
        """Drop transactions pending longer than `ttl_ms`, and future ones pending longer
        than `future_ttl_ms`, each with every later nonce of its sender. O(log n) per
        transaction dropped, nothing while none is old enough."""
        dropped: list[Transaction] = []
        for tx_hash in self._ages.pop_older_than(now_ms - self.limits.ttl_ms):
            self._drop_from(tx_hash, dropped)
        for tx_hash in self._future_ages.pop_older_than(now_ms - self.limits.future_ttl_ms):
            self._drop_from(tx_hash, dropped)
        self._compact()
        return dropped

    def _drop_from(self, tx_hash: bytes, dropped: list[Transaction]) -> None:
        tx = self._by_hash.get(tx_hash)
        if tx is None:
            return
        queue = self._senders[tx.sender]
        later = [queue.by_nonce[nonce] for nonce in sorted(queue.by_nonce) if nonce >= tx.nonce]
        for doomed in later:
            dropped.append(doomed)
            self._remove(doomed)

    # --- bookkeeping -----------------------------------------------------------------

    def _remove(self, tx: Transaction) -> None:
        if self._by_hash.pop(tx.hash, None) is None:
            return
        self._admitted_at.pop(tx.hash, None)
        self._bytes -= len(tx.raw)
        queue = self._senders[tx.sender]
        self._ready_total -= queue.ready_count
        queue.discard(tx)
        self._ready_total += queue.ready_count
        if queue.by_nonce:
            self._index_tail(tx.sender, queue)
        else:
            del self._senders[tx.sender]

    def _index_tail(self, sender: bytes, queue: SenderQueue) -> None:
        """Put the sender's tail in the eviction index if it (or its rank) changed."""
        tail = queue.tail()
        key = (tail.hash, queue.rank_of(tail.nonce))
        if queue.indexed != key:
            queue.indexed = key
            self._tails.add(key[1], fee_rate(tail), self._admitted_at[tail.hash], sender, tail.hash)

    def _compact(self) -> None:
        self._tails.compact(len(self._senders))
        self._ages.compact(len(self._by_hash))
        self._future_ages.compact(self.future_count)

    def _tail_is_current(self, entry: TailEntry) -> bool:
        queue = self._senders.get(entry[4])
        return queue is not None and queue.indexed == (entry[5], entry[0])

    def _age_is_current(self, entry: AgeEntry) -> bool:
        return self._admitted_at.get(entry[2]) == entry[0]

    def _future_age_is_current(self, entry: AgeEntry) -> bool:
        tx = self._by_hash.get(entry[2])
        return (tx is not None and self._admitted_at[tx.hash] == entry[0]
                and self._senders[tx.sender].rank_of(tx.nonce) == FUTURE)
