"""Admission of incoming transactions (PROTOCOL R10): one pipeline for HTTP and gossip.

Every transaction, whether a client posted it or a peer gossiped it, goes through the
same two steps:

1. its stateless **verdict** (`marketplace_tx.rules.admission.admission_verdict`: size,
   decoding, chain, type, schema, fee, then the signature), computed off the event loop
   by one of three interchangeable strategies that give identical verdicts:
   `InThreadVerdicts` (here and now), `ThreadPoolVerdicts` (chunks in a thread pool:
   libsodium and LevelDB release the GIL) and `WorkerProcessVerdicts` (chunks in the
   signature worker processes, node/signature_workers.py, for large batches; it falls
   back to the thread pool when no worker answers);
2. `Mempool.admit`, in arrival order on the event loop: every stateful check, once.

Then admitted transactions that are ready are gossiped to peers in batches (a future
transaction, above a nonce gap, is relayed only once an admission fills its gap: nothing
relays what no block can include) and consensus is woken. Large batches are admitted
`ADMIT_CHUNK` at a time, yielding to the event loop in between.

Gossiped transactions are paid for (issue 13; node/tx_gossip.py): a peer's `txs`
messages wait in a queue bounded in bytes per peer and in total; each transaction is
screened by the cheap checks first (size, known hash, decoding, chain, schema, fee, then
`Mempool.screen`: nonce window, funds, per-sender limits, room), and only the survivors'
signatures are verified; every refusal costs the peer score in proportion to the work
it caused (R32), charged before the signatures are checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.admission import (
    Verdict,
    admission_verdicts,
    check_stateless,
    no_signature_known,
)
from mempool.pool import Mempool, MempoolLimits, ScreenedAhead
from node.config import MempoolConfig
from node.signature_workers import SignatureWorkers, worker_answer
from node.tx_gossip import DROPPED_MESSAGE_PENALTY, ReceivedQueue, penalty_of

log = logging.getLogger("marketchain.node")

THREAD_CHUNK = 64
"""Transactions one thread of the pool checks at a time (decode, schema, signature)."""
PROCESS_FROM = 64
"""Batches of at least this many transactions are checked in the worker processes."""
PROCESS_CHUNK = 250
"""Transactions one worker process takes at a time."""
TX_GOSSIP_BATCH = 500
"""Most transactions in one `txs` gossip message."""
TX_GOSSIP_DELAY_S = 0.02
"""How long admitted transactions wait to be gossiped together."""
MAX_RECEIVED_BATCH = 10_000
"""Most transactions a peer may send in one `txs` message (more is malformed, R32)."""
MALFORMED_BATCH_PENALTY = 20.0
"""Score a peer loses for a malformed `txs` message (R32)."""
ABANDON_COST = 100.0
"""Score a `txs` message may cost its peer (the whole initial score: the peer is banned
by then) before the rest of it, and the peer's other queued messages, are dropped unchecked."""
ADMIT_CHUNK = 500
"""Transactions admitted between two yields to the event loop; gossiped refusals are
charged at least every `ADMIT_CHUNK`."""
SCREEN_CHUNK = 100
"""Gossiped transactions screened (decoded: about a third of a signature check each)
between two yields to the event loop."""
RECEIVED_BYTES_PER_PEER = 8 * 1024 * 1024
"""Default of `[mempool] gossip_queue_bytes_per_peer`: most bytes of one peer's `txs`
messages waiting for admission."""
RECEIVED_BYTES = 32 * 1024 * 1024
"""Default of `[mempool] gossip_queue_bytes`: most bytes of all peers' `txs` messages
waiting for admission."""

def mempool_limits(config: MempoolConfig) -> MempoolLimits:
    """The mempool's limits from the `[mempool]` section of the node's config."""
    return MempoolLimits(
        max_transactions=config.max_transactions,
        max_bytes=config.max_bytes,
        max_pending_per_sender=config.max_pending_per_sender,
        max_future_per_sender=config.max_future_per_sender,
        max_future=config.max_future,
        future_ttl_ms=config.future_ttl_s * 1000,
    )


Outcome = Transaction | AdmissionError
"""What admission answers for one transaction: the admitted transaction, or why not."""


class VerdictStrategy(Protocol):
    """Where the stateless verdicts of a batch are computed. Every strategy gives the
    verdicts `admission_verdicts` gives for the same bytes, in the same order (the worker
    processes cannot see which signatures the node verified before, so they verify
    those again: that changes `signature_verified`, never an answer)."""

    async def verdicts(self, raws: Sequence[bytes]) -> list[Verdict]:
        """The verdict on each of `raws`, in order."""
        ...


class AdmissionMetrics(Protocol):
    """The admission counters of the node's metrics (`NodeMetrics`, node/http/metrics.py)."""

    signature_checks: Any
    """Signatures verified, by kind (`tx_admission` here)."""
    admitted: Any
    """Transactions admitted, by source (`http`, `p2p`)."""
    rejected: Any
    """Transactions rejected, by R12 code."""


class InThreadVerdicts:
    """Verdicts computed in the calling thread."""

    def __init__(
        self, chain_id: str, params: Params, signature_known_valid: Callable[[bytes], bool] = no_signature_known
    ) -> None:
        self.chain_id = chain_id
        """The chain whose transactions are admitted."""
        self.params = params
        """The chain's parameters (max_tx_bytes, min_fee)."""
        self.signature_known_valid = signature_known_valid
        """True for a hash whose signature is not verified again (this node verified it before)."""

    def check(self, raws: Sequence[bytes]) -> list[Verdict]:
        """The verdicts, computed now in this thread."""
        return admission_verdicts(raws, self.chain_id, self.params, self.signature_known_valid)

    async def verdicts(self, raws: Sequence[bytes]) -> list[Verdict]:
        """`check`, from a coroutine (it blocks the event loop while it runs)."""
        return self.check(raws)


class ThreadPoolVerdicts:
    """Verdicts computed in a thread pool, `chunk` transactions per job."""

    def __init__(self, in_thread: InThreadVerdicts, executor: Executor, chunk: int = THREAD_CHUNK) -> None:
        self.in_thread = in_thread
        """What each job runs (with its chain, parameters and known signatures)."""
        self.executor = executor
        """The threads."""
        self.chunk = chunk
        """Transactions per job."""

    async def verdicts(self, raws: Sequence[bytes]) -> list[Verdict]:
        """The verdicts, chunk by chunk in the pool, gathered in order."""
        loop = asyncio.get_running_loop()
        chunks = [raws[start:start + self.chunk] for start in range(0, len(raws), self.chunk)]
        answers = await asyncio.gather(
            *(loop.run_in_executor(self.executor, self.in_thread.check, chunk) for chunk in chunks)
        )
        return [verdict for answer in answers for verdict in answer]


class WorkerProcessVerdicts:
    """Verdicts computed in the signature worker processes, `chunk` transactions per job
    (every signature is verified there); `fallback` computes them when there are no
    workers, or for a chunk whose worker failed or was stopped."""

    def __init__(
        self, chain_id: str, params: Params, workers: SignatureWorkers, fallback: VerdictStrategy,
        chunk: int = PROCESS_CHUNK,
    ) -> None:
        self.chain_id = chain_id
        """The chain whose transactions are admitted."""
        self.params = params
        """The chain's parameters (max_tx_bytes, min_fee)."""
        self.workers = workers
        """The worker processes (shared with block sync)."""
        self.fallback = fallback
        """The strategy used when the workers give no answer."""
        self.chunk = chunk
        """Transactions per job."""

    async def verdicts(self, raws: Sequence[bytes]) -> list[Verdict]:
        """The verdicts, chunk by chunk in the workers, gathered in order."""
        chunks = [raws[start:start + self.chunk] for start in range(0, len(raws), self.chunk)]
        futures = []
        for chunk in chunks:
            future = self.workers.admission_verdicts(chunk, self.chain_id, self.params)
            if future is None:  # no workers (any more): none of the chunks goes to them
                for started in futures:
                    started.cancel()
                return await self.fallback.verdicts(raws)
            futures.append(future)
        answers = await asyncio.gather(*(worker_answer(future) for future in futures))
        verdicts: list[Verdict] = []
        for chunk, answer in zip(chunks, answers, strict=True):
            if answer is None or len(answer) != len(chunk):
                answer = await self.fallback.verdicts(chunk)
            verdicts.extend(answer)
        return verdicts


class AdmissionPipeline:
    """Admits transactions from clients and peers (R10), gossips those admitted and
    wakes consensus; counts every outcome in the node's metrics."""

    def __init__(
        self,
        mempool: Mempool,
        workers: SignatureWorkers,
        metrics: AdmissionMetrics,
        clock_ms: Callable[[], int],
        broadcast: Callable[[str, Any], None],
        penalize: Callable[[bytes, float, str], None],
        notify_work: Callable[[], None],
        on_admitted: Callable[[Sequence[bytes]], None] | None = None,
        received_bytes_per_peer: int = RECEIVED_BYTES_PER_PEER,
        received_bytes: int = RECEIVED_BYTES,
        is_syncing: Callable[[], bool] = lambda: False,
    ) -> None:
        self.mempool = mempool
        """Where admitted transactions wait for a block; it runs the stateful checks."""
        self.metrics = metrics
        """Admission counters."""
        self.clock_ms = clock_ms
        """Wall-clock time in ms (the admission time the mempool's TTL counts from)."""
        self.broadcast = broadcast
        """Sends a message (`txs`) to every peer."""
        self.penalize = penalize
        """Lowers a peer's score (R32)."""
        self.notify_work = notify_work
        """Tells consensus that transactions are waiting."""
        self.on_admitted = on_admitted
        """Told the raw bytes of every batch of transactions admitted (the mempool journal
        buffers them, node/mempool_journal.py); None if nobody listens."""
        self._executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="precheck")
        self.in_thread = InThreadVerdicts(mempool.chain_id, mempool.params, mempool.signature_known_valid)
        """Verdicts on the event loop (one transaction submitted alone)."""
        self.thread_pool = ThreadPoolVerdicts(self.in_thread, self._executor)
        """Verdicts in threads (batches below `PROCESS_FROM`; fallback of the workers)."""
        self.worker_processes = WorkerProcessVerdicts(mempool.chain_id, mempool.params, workers, self.thread_pool)
        """Verdicts in worker processes (batches of `PROCESS_FROM` or more)."""
        self._gossip_queue: list[bytes] = []
        self._gossip_handle: asyncio.TimerHandle | None = None
        self.is_syncing = is_syncing
        """True while this node is behind (block sync): stale-state refusals are then not charged."""
        self.received = ReceivedQueue(received_bytes_per_peer, received_bytes)
        self._abandoned: set[bytes] = set()
        """Gossiped `txs` messages waiting for admission, bounded in bytes per peer and in total."""
        self._receiver: asyncio.Task[None] | None = None
        self._closed = False

    # --- from clients ------------------------------------------------------------------

    def submit(self, raw: bytes) -> Transaction:
        """Admit one transaction now (R10), gossip it and wake consensus; raise the
        `AdmissionError` that rejects it."""
        (outcome,), relay = self._admit(self.in_thread.check([raw]), "http")
        if isinstance(outcome, AdmissionError):
            raise outcome
        for ready in relay:
            self._gossip(ready)
        self.notify_work()
        return outcome

    async def submit_many(self, raws: Sequence[bytes]) -> list[Outcome]:
        """Admit transactions in order (R10) with their verdicts computed off the event
        loop, gossip those admitted and wake consensus; per transaction, the admitted
        `Transaction` or the `AdmissionError` that rejected it."""
        outcomes, relay = await self._admit_many(raws, "http")
        for ready in relay:
            self._gossip(ready)
        if any(isinstance(outcome, Transaction) for outcome in outcomes):
            self.notify_work()
        return outcomes

    async def readmit(self, raws: Sequence[bytes], admitted_ms: Sequence[int]) -> list[Outcome]:
        """Admit again, in order and through every check of R10, transactions this node
        admitted before a restart (the mempool journal), each keeping its first admission
        time (the mempool's TTL counts from it); counted under the source `journal`.
        Called at start, before consensus, the HTTP API and peers run: nothing is
        gossiped and consensus finds the work when it starts."""
        strategy: VerdictStrategy = self.worker_processes if len(raws) >= PROCESS_FROM else self.thread_pool
        return self.admit_verdicts(await strategy.verdicts(raws), "journal", admitted_ms)

    async def admit_many(self, raws: Sequence[bytes], source: str) -> list[Outcome]:
        """The verdicts of `raws` (worker processes for large batches, else the thread
        pool), then `admit_verdicts`, `ADMIT_CHUNK` at a time with the event loop free in between."""
        return (await self._admit_many(raws, source))[0]

    async def _admit_many(self, raws: Sequence[bytes], source: str) -> tuple[list[Outcome], list[bytes]]:
        """`admit_many`, and the raw bytes of the transactions it made ready to relay."""
        strategy: VerdictStrategy = self.worker_processes if len(raws) >= PROCESS_FROM else self.thread_pool
        verdicts = await strategy.verdicts(raws)
        outcomes: list[Outcome] = []
        relay: list[bytes] = []
        for start in range(0, len(verdicts), ADMIT_CHUNK):
            if start:
                await asyncio.sleep(0)  # let the event loop run between chunks
            part, ready = self._admit(verdicts[start:start + ADMIT_CHUNK], source)
            outcomes += part
            relay += ready
        return outcomes, relay

    def admit_verdicts(
        self, verdicts: Sequence[Verdict], source: str, admitted_ms: Sequence[int] | None = None
    ) -> list[Outcome]:
        """`Mempool.admit` of each verdict in order (admitted now, or at the time
        `admitted_ms` gives each), counted in the metrics once for the whole batch
        (outcomes by source and code, signatures verified); `on_admitted` is told the
        transactions admitted."""
        return self._admit(verdicts, source, admitted_ms)[0]

    def _admit(
        self, verdicts: Sequence[Verdict], source: str, admitted_ms: Sequence[int] | None = None
    ) -> tuple[list[Outcome], list[bytes]]:
        """`admit_verdicts`, and the raw bytes to relay: each admitted transaction that is
        ready, and the future ones an admission made ready (`Mempool.last_promoted`)."""
        now = self.clock_ms()
        mempool = self.mempool
        mempool.expire(now)  # future transactions expire even while no block comes (O(1) if none is due)
        admit = mempool.admit
        outcomes: list[Outcome] = []
        admitted_raws: list[bytes] = []
        relay: list[bytes] = []
        verified = 0
        rejected: dict[str, int] = {}
        for index, verdict in enumerate(verdicts):
            try:
                tx = admit(verdict, now if admitted_ms is None else admitted_ms[index])
                outcomes.append(tx)
                admitted_raws.append(tx.raw)
                if mempool.is_ready(tx.hash):
                    relay.append(tx.raw)
                relay.extend(promoted.raw for promoted in mempool.last_promoted)
            except AdmissionError as error:
                outcomes.append(error)
                rejected[error.code] = rejected.get(error.code, 0) + 1
            verified += verdict.signature_verified
        self._count(source, len(admitted_raws), rejected, verified)
        if admitted_raws and self.on_admitted is not None:
            self.on_admitted(admitted_raws)
        return outcomes, relay

    def _count(self, source: str, admitted: int, rejected: dict[str, int], verified: int) -> None:
        """One counter update per outcome kind (the per-transaction `NodeMetrics.admission`, batched)."""
        metrics = self.metrics
        if verified:
            metrics.signature_checks.labels("tx_admission").inc(verified)
        if admitted:
            metrics.admitted.labels(source).inc(admitted)
        for code, count in rejected.items():
            metrics.rejected.labels(code).inc(count)

    # --- gossip ------------------------------------------------------------------------

    def _gossip(self, raw: bytes) -> None:
        """Queue an admitted transaction for the next `txs` message to every peer."""
        self._gossip_queue.append(raw)
        if len(self._gossip_queue) >= TX_GOSSIP_BATCH:
            self._flush_gossip()
        elif self._gossip_handle is None:
            self._gossip_handle = asyncio.get_running_loop().call_later(TX_GOSSIP_DELAY_S, self._flush_gossip)

    def _flush_gossip(self) -> None:
        """Send the queued transactions now, in one `txs` message."""
        if self._gossip_handle is not None:
            self._gossip_handle.cancel()
            self._gossip_handle = None
        batch, self._gossip_queue = self._gossip_queue, []
        if batch:
            self.broadcast("txs", batch)

    def receive(self, peer: bytes, body: Any) -> None:
        """A `txs` message from `peer`: queued, then admitted in arrival order by one task.
        A malformed message costs the peer `MALFORMED_BATCH_PENALTY`; one beyond the
        queue's byte budgets is dropped and costs `DROPPED_MESSAGE_PENALTY` (R32)."""
        if self._closed:  # the node stops: a message still arriving is not admitted
            return
        if (not isinstance(body, list) or len(body) > MAX_RECEIVED_BATCH
                or not all(isinstance(item, bytes) for item in body)):
            self.penalize(peer, MALFORMED_BATCH_PENALTY, "txs body malformed")
            return
        if not self.received.put(peer, body):
            self.penalize(peer, DROPPED_MESSAGE_PENALTY, "txs message dropped: its queue is full")
            return
        if self._receiver is None or self._receiver.done():
            self._receiver = asyncio.get_running_loop().create_task(self._admit_received())

    async def _admit_received(self) -> None:
        """Admit gossiped messages one after the other, in the order they came."""
        while not self._closed and (item := self.received.take()) is not None:
            peer, body, size = item
            try:
                if peer not in self._abandoned:
                    await self._admit_gossiped(peer, body)
            except Exception:  # one message must not stop the admission of the next
                if self._closed:  # the node stopped under it (its threads are gone): not a fault
                    return
                log.exception("admitting gossiped transactions failed")
            finally:
                self.received.done(peer, size)
                if not self.received.bytes_of(peer):
                    self._abandoned.discard(peer)

    async def _admit_gossiped(self, peer: bytes, body: list[bytes]) -> None:
        """Screen a peer's transactions by the cheap checks and charge it for those refused,
        then verify the survivors' signatures and admit them; relay what became ready and
        wake consensus."""
        survivors: list[bytes] = []
        seen: set[bytes] = set()
        ahead: dict[bytes, ScreenedAhead] = {}
        cost = 0.0
        refused: dict[str, int] = {}
        for start in range(0, len(body), SCREEN_CHUNK):
            if start:
                await asyncio.sleep(0)  # let the event loop run between chunks
            for raw in body[start:start + SCREEN_CHUNK]:
                code = self._screen(raw, seen, ahead)
                if code is None:
                    survivors.append(raw)
                else:
                    refused[code] = refused.get(code, 0) + 1
            if sum(refused.values()) < ADMIT_CHUNK and start + SCREEN_CHUNK < len(body):
                continue
            cost += self._charge(peer, refused)  # before any signature is verified
            self._count("p2p", 0, refused, 0)
            refused = {}
            if cost >= ABANDON_COST:  # hostile: nothing more of it is checked
                self._abandoned.add(peer)
                return
        admitted = False
        for start in range(0, len(survivors), PROCESS_CHUNK):  # signatures a chunk at a time
            outcomes, relay = await self._admit_many(survivors[start:start + PROCESS_CHUNK], "p2p")
            late: dict[str, int] = {}
            for outcome in outcomes:
                if isinstance(outcome, AdmissionError):
                    late[outcome.code] = late.get(outcome.code, 0) + 1
            cost += self._charge(peer, late)
            if relay:
                self._gossip_queue.extend(relay)
                self._flush_gossip()
            admitted = admitted or sum(late.values()) < len(outcomes)
            if cost >= ABANDON_COST:  # bad signatures: the rest of the message is not checked
                self._abandoned.add(peer)
                break
        if admitted:
            self.notify_work()

    def _screen(self, raw: bytes, seen: set[bytes], ahead: dict[bytes, ScreenedAhead]) -> str | None:
        """The R12 code of the first cheap check a gossiped transaction fails (size, known
        hash, also among `seen` (earlier in its message), decoding, chain, type, schema,
        fee, then `Mempool.screen` counting the senders' transactions screened `ahead` of
        it in its message), or None."""
        if len(raw) > self.mempool.params.max_tx_bytes:
            return "tx_too_large"
        tx_hash = hashlib.sha256(raw).digest()  # the tx hash (R9): no decoding needed
        if tx_hash in seen or self.mempool.knows(tx_hash):
            return "duplicate"
        seen.add(tx_hash)
        try:
            tx = check_stateless(raw, self.mempool.chain_id, self.mempool.params, verify_signature=False)
            self.mempool.screen(tx, ahead)
        except AdmissionError as error:
            return error.code
        return None

    def _charge(self, peer: bytes, refused: dict[str, int]) -> float:
        """Lower `peer`'s score for its refused transactions, one report per code (R32);
        the score taken."""
        syncing = self.is_syncing() if refused else False
        total = 0.0
        for code, count in refused.items():
            penalty = penalty_of(code, syncing) * count
            if penalty > 0:
                self.penalize(peer, penalty, f"gossiped tx: {code}" + (f" x{count}" if count > 1 else ""))
                total += penalty
        return total

    def close(self) -> None:
        """Stop admitting gossiped transactions and stop the threads (the node stops)."""
        self._closed = True
        if self._receiver is not None:
            self._receiver.cancel()
        self.received.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
