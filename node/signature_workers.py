"""Transaction checks and signatures in worker processes (speed only; docs/performance.md).

Threads verify Ed25519 signatures in parallel because libsodium releases the GIL, but a
thread that finished a C call waits for the GIL whenever another thread runs Python code
(the "convoy": `bench/gil_convoy.py` measured 804 verifications/s next to one busy
thread instead of 13,714), and decoding and the stateless checks of R10 hold the GIL
all along. A node under load always has a busy thread (the event loop, `build_block`,
`apply_block`), so the heavy per-transaction work runs here, in separate processes with
their own GIL:

- admission: `admission_verdicts` (the stateless checks of R10 and the signature) runs
  on a chunk of incoming transactions and sends back their `Verdict`s with the decoded
  `Transaction`s (pickled, which costs the node less than decoding); the node then runs
  the checks that need its own state (`Mempool.admit`) in arrival order
  (node/admission.py, `WorkerProcessVerdicts`);
- block sync: `valid_signature_hashes` verifies the signatures of a fetched block while
  the node executes the blocks before it; `apply_block` then skips those signatures.

A worker's answer never changes a result, only who computes it: every outcome is the one
`admission_verdict` / `apply_block` gives in the node, and a worker that crashes, or is
stopped, makes the node fall back to its own threads. The processes start when first
needed and stop after `IDLE_STOP_S` without work.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from marketplace_tx.chain.block import decode_block
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import decode_transaction
from marketplace_tx.primitives.errors import MarketchainError
from marketplace_tx.rules.admission import Verdict, admission_verdicts

log = logging.getLogger("marketchain.workers")

PARENT_CHECK_S = 1.0
"""How often a worker checks that the node that started it is still alive."""
IDLE_STOP_S = 15.0
"""Workers without a job for this long are stopped (they restart when needed)."""

def _watch_parent(parent: int) -> None:
    """Exit the worker once its node is gone (killed with SIGKILL, it cannot say so)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _worker_start(parent: int) -> None:
    """Set up a worker: Ctrl-C is the node's to handle; die with the node."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()


def valid_signature_hashes(raw_block: bytes, max_block_bytes: int, max_tx_bytes: int) -> list[bytes]:
    """In a worker: hashes of the transactions of `raw_block` whose signature is valid.

    Transactions that do not decode are left out (the node reports them with the right
    error when it applies the block); a block that does not decode gives an empty list.
    """
    try:
        block = decode_block(raw_block, max_block_bytes)
    except MarketchainError:
        return []
    hashes = []
    for raw in block.txs:
        try:
            tx = decode_transaction(raw, max_tx_bytes)
        except MarketchainError:  # a malformed transaction: the node's own checks name it
            continue
        if tx.has_valid_signature():
            hashes.append(tx.hash)
    return hashes


class SignatureWorkers:
    """A small pool of worker processes, started when first needed and stopped when idle."""

    def __init__(self, processes: int, idle_stop_s: float = IDLE_STOP_S) -> None:
        self.processes = processes
        """Worker processes to run; 0 means none (the node does every check itself)."""
        self.idle_stop_s = idle_stop_s
        """Seconds without a job after which the processes are stopped."""
        self.jobs_done = 0
        """Jobs the workers answered since the node started."""
        self._executor: ProcessPoolExecutor | None = None
        self._pending = 0
        self._last_used = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        """True while worker processes are up."""
        return self._executor is not None

    def _submit(self, function: Any, *arguments: Any) -> asyncio.Future[Any] | None:
        """Run `function(*arguments)` in a worker, or None when there are no workers."""
        if self.processes <= 0:
            return None
        loop = asyncio.get_running_loop()
        if self._executor is None:
            try:
                # spawn, not fork: the node has threads and an event loop that a fork would copy
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_start, initargs=(os.getpid(),),
                )
            except (OSError, ImportError, ValueError) as error:  # e.g. no /dev/shm for its locks
                log.warning("cannot start signature worker processes (%s); the node checks "
                            "everything in its own threads from now on", error)
                self.processes = 0
                return None
            log.info("started %d signature worker process(es)", self.processes)
        try:
            future = loop.run_in_executor(self._executor, function, *arguments)
        except (BrokenProcessPool, RuntimeError) as error:
            log.warning("signature workers unavailable (%s); checking in the node", error)
            self.stop()
            return None
        self._pending += 1
        self._last_used = time.monotonic()
        future.add_done_callback(self._job_done)
        if self._idle_timer is None:
            self._idle_timer = loop.call_later(self.idle_stop_s, self._stop_if_idle)
        return future

    def _job_done(self, future: asyncio.Future[Any]) -> None:
        self._pending -= 1
        self._last_used = time.monotonic()
        if not future.cancelled() and future.exception() is None:
            self.jobs_done += 1

    def _stop_if_idle(self) -> None:
        self._idle_timer = None
        if self._executor is None:
            return
        quiet_for = time.monotonic() - self._last_used
        if self._pending == 0 and quiet_for >= self.idle_stop_s:
            self.stop()
        else:
            delay = self.idle_stop_s - quiet_for if self._pending == 0 else self.idle_stop_s
            self._idle_timer = asyncio.get_running_loop().call_later(max(delay, 0.1), self._stop_if_idle)

    def admission_verdicts(
        self, raws: Sequence[bytes], chain_id: str, params: Params
    ) -> asyncio.Future[list[Verdict]] | None:
        """Start `admission_verdicts` of `raws` in a worker (every signature verified
        there): a future, or None without workers."""
        return self._submit(admission_verdicts, list(raws), chain_id, params)

    def verify_block(self, raw_block: bytes, params: Params) -> asyncio.Future[list[bytes]] | None:
        """Start verifying the signatures of `raw_block` in a worker: a future of the
        valid hashes, or None without workers."""
        return self._submit(valid_signature_hashes, raw_block, params.max_block_bytes, params.max_tx_bytes)

    def stop(self, wait: bool = False) -> None:
        """Stop the workers (idle, or the node stops); they restart when needed.
        Jobs not started yet are cancelled (their callers fall back to the node).
        `wait` (the node stops) also waits for the executor's manager thread to end, so
        that the interpreter's exit never races it (Python 3.11's ProcessPoolExecutor can
        then write to its closed wake-up pipe: "OSError: Bad file descriptor" at exit)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)
            log.info("stopped the signature worker process(es)")


async def worker_answer(future: asyncio.Future[Any] | None) -> Any | None:
    """A worker's answer, or None if there was no worker or it failed (the node then
    does the work itself)."""
    if future is None:
        return None
    try:
        return await future
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the caller is being cancelled, not just the worker's job
        return None  # the workers were stopped meanwhile
    except Exception as error:  # a worker's answer only saves work: any failure falls back to the node
        log.warning("a signature worker failed (%s); checking in the node", error or type(error).__name__)
        return None


async def verified_hashes(future: asyncio.Future[list[bytes]] | None) -> frozenset[bytes]:
    """The hashes a worker found valid, or none if it failed (the node then verifies them)."""
    return frozenset(await worker_answer(future) or ())
