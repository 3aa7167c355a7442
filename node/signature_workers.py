"""Transaction signatures verified in worker processes (speed only; docs/performance.md).

Threads verify Ed25519 signatures in parallel because libsodium releases the GIL, but a
thread that finished a C call waits for the GIL whenever another thread runs Python code
(the "convoy": `bench/gil_convoy.py` measured 804 verifications/s next to one busy
thread instead of 13,714). Block sync keeps a thread busy executing blocks, so the
signatures of the blocks it has fetched but not yet applied are verified here, in
separate processes with their own GIL, while the node executes the block before them.

A worker only reports which transaction hashes carry a valid signature; the node still
runs every other check itself (`apply_block`), and a hash not reported is simply verified
again there. So a worker that crashes, or answers late, changes speed, never results.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from marketplace_tx.block import decode_block
from marketplace_tx.errors import MarketchainError
from marketplace_tx.transaction import decode_transaction

log = logging.getLogger("marketchain.sync")

PARENT_CHECK_S = 1.0
"""How often a worker checks that the node that started it is still alive."""


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
    """Hashes of the transactions of `raw_block` whose signature is valid.

    Runs in a worker. Transactions that do not decode are left out (the node reports
    them with the right error when it applies the block); a block that does not decode
    gives an empty list.
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

    def __init__(self, processes: int, max_block_bytes: int, max_tx_bytes: int) -> None:
        self.processes = processes
        """Worker processes to run; 0 means none (every signature is verified in the node)."""
        self.max_block_bytes = max_block_bytes
        """The chain's block size limit (decoding checks it)."""
        self.max_tx_bytes = max_tx_bytes
        """The chain's transaction size limit (decoding checks it)."""
        self._executor: ProcessPoolExecutor | None = None

    @property
    def running(self) -> bool:
        """True while worker processes are up."""
        return self._executor is not None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the node has threads and an event loop that a fork would copy
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                self.processes, mp_context=context, initializer=_worker_start, initargs=(os.getpid(),)
            )
            log.info("started %d signature worker process(es)", self.processes)
        return self._executor

    def verify_block(self, raw_block: bytes) -> asyncio.Future[list[bytes]] | None:
        """Start verifying the signatures of `raw_block` in a worker: a future of the
        valid hashes, or None when there are no workers."""
        if self.processes <= 0:
            return None
        loop = asyncio.get_running_loop()
        try:
            return loop.run_in_executor(
                self._pool(), valid_signature_hashes, raw_block, self.max_block_bytes, self.max_tx_bytes
            )
        except (BrokenProcessPool, RuntimeError) as error:
            log.warning("signature workers unavailable (%s); verifying in the node", error)
            self.stop()
            return None

    def stop(self) -> None:
        """Stop the workers (sync caught up, or the node stops); they restart when needed."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            log.info("stopped the signature worker process(es)")


async def verified_hashes(future: asyncio.Future[list[bytes]] | None) -> frozenset[bytes]:
    """The hashes a worker found valid, or none if it failed (the node then verifies them)."""
    if future is None:
        return frozenset()
    try:
        return frozenset(await future)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the caller is being cancelled, not just the worker's job
        return frozenset()  # the workers were stopped meanwhile
    except Exception as error:  # a worker's answer only saves work: any failure falls back to the node
        log.warning("a signature worker failed (%s); verifying in the node", error or type(error).__name__)
        return frozenset()
