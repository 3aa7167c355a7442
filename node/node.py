"""The node: storage, mempool, consensus, peers, block sync and the HTTP API, wired together."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

from aiohttp import web

from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.accounts import Account, load_account
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.order_records import Order, load_order
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import ACCOUNT
from marketplace_tx.rules.state_transition import BlockResult
from marketplace_tx.rules.validators import set_at
from mempool.pool import Mempool, MempoolLimits
from node.block_sync import BlockSync
from node.consensus_driver import ConsensusDriver, wall_clock_ms
from node.events import ChainEvent, EventHub, block_events, orders_named
from node.home import Home
from node.http.app import build_app
from node.http.metrics import NodeMetrics
from node.sign_guard import SignGuard
from node.signature_workers import CheckedTransaction, SignatureWorkers, worker_answer
from node.storage import ChainStore
from p2p.config import PeerManagerConfig
from p2p.peer_manager import PeerManager

log = logging.getLogger("marketchain.node")

TX_GOSSIP_BATCH = 500
"""Most transactions in one `txs` gossip message."""
TX_GOSSIP_DELAY_S = 0.02
"""How long admitted transactions wait to be gossiped together."""
PRECHECK_CHUNK = 64
"""Transactions one precheck thread checks at a time (decode, schema, signature)."""
PROCESS_FROM = 64
"""Batches of at least this many transactions are checked in the worker processes."""
PROCESS_CHUNK = 250
"""Transactions one worker process takes at a time."""


def package_version() -> str:
    """The installed marketchain version."""
    try:
        return metadata.version("marketchain")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class Node:
    """A running marketchain node: a validator if its key is in the set, else a full node."""

    def __init__(self, home: Home) -> None:
        self.home = home
        """The node's home directory, config, genesis and keys."""
        self.config = home.config
        """The effective configuration."""
        self.genesis = home.genesis
        """The chain's genesis."""
        self.node_key = home.node_key
        """The node's identity key (P2P handshakes, `/status` node_id)."""
        self.validator_key = home.validator_key
        """The validator signing key, if this home has one."""
        self.version = package_version()
        """The software version reported by `/status`."""
        storage = home.config.storage
        self.store = ChainStore(
            home.data_directory / "chain.db", storage.write_buffer_bytes, storage.cache_bytes, storage.bloom_filter_bits
        )
        """The LevelDB database."""
        self.store.initialize(self.genesis)
        self.events = EventHub()
        """Final blocks, tx results and order changes for `GET /events`."""
        self.metrics = NodeMetrics(self)
        """This node's Prometheus metrics (`GET /metrics`)."""
        self.mempool = Mempool(
            self.genesis.chain_id,
            self.genesis.params,
            self.committed_account,
            lambda tx_hash: self.store.tx_location(tx_hash) is not None,
            MempoolLimits(home.config.mempool.max_transactions, home.config.mempool.max_bytes),
        )
        """Transactions waiting for a block."""
        self.sign_guard = SignGuard(self.store.db, self.validator_key) if self.validator_key else None
        """Double-sign protection of the validator key (R27)."""
        self.new_block = asyncio.Condition()
        """Notified after every stored block."""
        self.peers = PeerManager(
            self.node_key,
            self.genesis.chain_id,
            self.genesis.hash,
            self.config.p2p.host,
            self.config.p2p.port,
            self.config.p2p.persistent_peers,
            self._on_message,
            PeerManagerConfig(),
            on_connect=self._on_peer_connected,
            on_disconnect=self._on_peer_disconnected,
        )
        """The peer-to-peer layer (R31, R32)."""
        self.driver = ConsensusDriver(self, self.peers.broadcast)
        """The Tendermint driver (R25)."""
        self.workers = SignatureWorkers(home.config.signatures.worker_processes)
        """Worker processes for transaction checks and signatures (node/signature_workers.py)."""
        self.sync = BlockSync(self, self.peers.send, self.workers)
        """Block sync (R30)."""
        self._gossip_queue: list[bytes] = []
        self._gossip_handle: asyncio.TimerHandle | None = None
        self._verifier = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="precheck")
        """Threads for the stateless checks and signatures of incoming transactions
        (libsodium releases the GIL, so signatures are verified on every core)."""
        self._committed_accounts: dict[bytes, Account] = {}
        self._received_txs: asyncio.Queue[tuple[bytes, list[bytes]]] = asyncio.Queue()
        self._receiver: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.started_at = time.time()
        """When this process started (s since the epoch)."""

    @property
    def validator_address(self) -> bytes | None:
        """This node's validator address, if its key is in the current set."""
        key = self.validator_key
        if key is None:
            return None
        tip = self.store.head()
        return key.address if key.address in set_at(State(self.store), tip.height + 1) else None

    def committed_account(self, address: bytes) -> Account:
        """An account as of the last final block.

        Kept until the next block is stored (`after_block` clears it): admission reads
        the same senders again and again, and a LevelDB read on the event loop also
        hands the GIL to busy threads, which it then waits to get back.
        """
        account = self._committed_accounts.get(address)
        if account is None:
            account = self._committed_accounts[address] = load_account(State(self.store), address)
        return account

    @staticmethod
    def hash_of(raw: bytes) -> bytes:
        """A transaction's hash (R9)."""
        return hashlib.sha256(raw).digest()

    def decode_committed(self, raw: bytes) -> Transaction:
        """Decode a transaction already final in a block (its checks passed before)."""
        return check_stateless(raw, self.genesis.chain_id, self.genesis.params, verify_signature=False)

    # --- transactions ----------------------------------------------------------------

    def submit(self, raw: bytes) -> Transaction:
        """Admit a transaction (R10), gossip it, and wake consensus."""
        tx = self._admit(raw, "http")
        self._gossip_tx(tx.raw)
        self.driver.notify_work()
        return tx

    async def submit_many(self, raws: Sequence[bytes]) -> list[Transaction | AdmissionError]:
        """Admit transactions in order (R10) with their signatures checked off the event
        loop, gossip those admitted and wake consensus; per transaction, the admitted
        `Transaction` or the `AdmissionError` that rejected it."""
        outcomes = await self._admit_many(raws, "http")
        admitted = False
        for outcome in outcomes:
            if isinstance(outcome, Transaction):
                self._gossip_tx(outcome.raw)
                admitted = True
        if admitted:
            self.driver.notify_work()
        return outcomes

    def _admit(self, raw: bytes, source: str) -> Transaction:
        """`Mempool.add`, counted in the metrics (outcome, signature verified or cached)."""
        known = self.mempool.signature_known_valid(self.hash_of(raw))
        try:
            tx = self.mempool.add(raw, wall_clock_ms())
        except AdmissionError as error:
            self.metrics.admission(source, error.code, not known and error.code == "bad_signature")
            raise
        self.metrics.admission(source, None, not known)
        return tx

    def _precheck_chunk(self, raws: Sequence[bytes]) -> list[tuple[Transaction | AdmissionError, bool]]:
        """In a worker thread: `Mempool.precheck` of each, and whether it verified a signature."""
        outcomes: list[tuple[Transaction | AdmissionError, bool]] = []
        known = self.mempool.signature_known_valid
        for raw in raws:
            try:
                tx = self.mempool.precheck(raw)
            except AdmissionError as error:
                outcomes.append((error, error.code == "bad_signature"))
            else:
                outcomes.append((tx, not known(tx.hash)))
        return outcomes

    async def _admit_many(self, raws: Sequence[bytes], source: str) -> list[Transaction | AdmissionError]:
        """Stateless checks and signatures off the event loop (worker processes for large
        batches, else the thread pool), then `Mempool.add_checked` in order."""
        checked: list[list[tuple[Transaction | AdmissionError, bool]]] | None = None
        if len(raws) >= PROCESS_FROM:
            checked = await self._check_in_workers(raws)
        if checked is None:
            loop = asyncio.get_running_loop()
            chunks = [raws[start:start + PRECHECK_CHUNK] for start in range(0, len(raws), PRECHECK_CHUNK)]
            checked = await asyncio.gather(
                *(loop.run_in_executor(self._verifier, self._precheck_chunk, chunk) for chunk in chunks)
            )
        now = wall_clock_ms()
        results: list[Transaction | AdmissionError] = []
        admitted = verified_count = 0
        rejected: dict[str, int] = {}
        for prechecked, verified in (item for chunk in checked for item in chunk):
            if isinstance(prechecked, Transaction):
                try:
                    prechecked = self.mempool.add_checked(prechecked, now, prechecked=True)
                except AdmissionError as error:
                    prechecked = error
            if isinstance(prechecked, AdmissionError):
                rejected[prechecked.code] = rejected.get(prechecked.code, 0) + 1
            else:
                admitted += 1
            verified_count += verified
            results.append(prechecked)
        self._count_admissions(source, admitted, rejected, verified_count)
        return results

    async def _check_in_workers(
        self, raws: Sequence[bytes]
    ) -> list[list[tuple[Transaction | AdmissionError, bool]]] | None:
        """`_precheck_chunk` of every chunk of `raws`, done by the worker processes; None
        when there are no workers (the caller then uses its threads)."""
        chunks = [raws[start:start + PROCESS_CHUNK] for start in range(0, len(raws), PROCESS_CHUNK)]
        genesis = self.genesis
        futures = []
        for chunk in chunks:
            future = self.workers.check_transactions(chunk, genesis.chain_id, genesis.params)
            if future is None:
                for started in futures:
                    started.cancel()
                return None
            futures.append(future)
        answers = await asyncio.gather(*(worker_answer(future) for future in futures))
        return [self._verdicts(chunk, answer) for chunk, answer in zip(chunks, answers, strict=True)]

    def _verdicts(
        self, raws: Sequence[bytes], answer: list[CheckedTransaction] | None
    ) -> list[tuple[Transaction | AdmissionError, bool]]:
        """A worker's answer for `raws` as `_precheck_chunk` gives it; without an answer
        (the worker failed or was stopped), `_precheck_chunk` itself, here."""
        if answer is None or len(answer) != len(raws):
            return self._precheck_chunk(raws)
        outcomes: list[tuple[Transaction | AdmissionError, bool]] = []
        for verdict in answer:
            first, second = verdict
            if not isinstance(first, Transaction):
                outcomes.append((AdmissionError(first, second), False))
                continue
            try:
                outcomes.append((self.mempool.precheck_decoded(first, bool(second)), True))
            except AdmissionError as error:
                outcomes.append((error, error.code == "bad_signature"))
        return outcomes

    def _count_admissions(self, source: str, admitted: int, rejected: dict[str, int], verified: int) -> None:
        """`NodeMetrics.admission` for a whole batch at once (one counter update per outcome)."""
        metrics = self.metrics
        if verified:
            metrics.signature_checks.labels("tx_admission").inc(verified)
        if admitted:
            metrics.admitted.labels(source).inc(admitted)
        for code, count in rejected.items():
            metrics.rejected.labels(code).inc(count)

    def _gossip_tx(self, raw: bytes) -> None:
        self._gossip_queue.append(raw)
        if len(self._gossip_queue) >= TX_GOSSIP_BATCH:
            self._flush_gossip()
        elif self._gossip_handle is None:
            self._gossip_handle = asyncio.get_running_loop().call_later(TX_GOSSIP_DELAY_S, self._flush_gossip)

    def _flush_gossip(self) -> None:
        if self._gossip_handle is not None:
            self._gossip_handle.cancel()
            self._gossip_handle = None
        batch, self._gossip_queue = self._gossip_queue, []
        if batch:
            self.peers.broadcast("txs", batch)

    def _receive_txs(self, peer: bytes, body: Any) -> None:
        if not isinstance(body, list) or len(body) > 10_000 or not all(isinstance(item, bytes) for item in body):
            self.penalize(peer, 20, "txs body malformed")
            return
        self._received_txs.put_nowait((peer, body))
        if self._receiver is None or self._receiver.done():
            self._receiver = asyncio.get_running_loop().create_task(self._admit_received())

    async def _admit_received(self) -> None:
        """Admit gossiped batches one after the other, in the order they came."""
        while not self._received_txs.empty():
            peer, body = self._received_txs.get_nowait()
            admitted = 0
            for raw, outcome in zip(body, await self._admit_many(body, "p2p"), strict=True):
                if isinstance(outcome, AdmissionError):
                    if outcome.code in ("bad_signature", "malformed", "wrong_chain", "tx_too_large"):
                        self.penalize(peer, 5, f"gossiped tx: {outcome.code}")
                    continue
                admitted += 1
                self._gossip_queue.append(raw)
            if admitted:
                self._flush_gossip()
                self.driver.notify_work()

    # --- peers -----------------------------------------------------------------------

    def penalize(self, peer: bytes, penalty: float, reason: str) -> None:
        """Lower a peer's score for bad data (R32)."""
        self.peers.report(peer, penalty, reason)

    def relay(self, peer: bytes, kind: str, body: Any) -> None:
        """Pass a validated consensus message on to every other peer (R32)."""
        self.peers.broadcast(kind, body, exclude=peer)

    def maybe_sync(self, peer: bytes, height: int) -> None:
        """A peer has blocks up to `height`: sync if we are behind."""
        if height > self.store.head().height:
            self.sync.peer_height(peer, height)

    def _status_body(self) -> dict[str, Any]:
        tip = self.store.head()
        return {"height": tip.height, "block_hash": tip.block_hash}

    def _on_peer_connected(self, peer: bytes) -> None:
        self.peers.send(peer, "status", self._status_body())
        self.driver.send_current_messages(peer, self.peers.send)

    def _on_peer_disconnected(self, peer: bytes) -> None:
        self.sync.peer_gone(peer)

    def _on_message(self, peer: bytes, kind: str, body: Any) -> None:
        if kind == "txs":
            self._receive_txs(peer, body)
        elif kind == "proposal":
            self.driver.receive_proposal(peer, body)
        elif kind == "vote":
            self.driver.receive_vote(peer, body)
        elif kind == "evidence":
            self.driver.receive_evidence(peer, body)
        elif kind == "status":
            height = body.get("height") if isinstance(body, dict) else None
            if isinstance(height, int) and not isinstance(height, bool) and height >= 0:
                self.maybe_sync(peer, height)
        elif kind == "block_request":
            self.sync.serve(peer, body)
        elif kind == "block_response":
            self.sync.receive(peer, body)

    # --- blocks ----------------------------------------------------------------------

    def final_order(self, order_id: bytes) -> Order | None:
        """An order as of the last final block."""
        return load_order(State(self.store), order_id)

    def _publish_events(self, result: BlockResult) -> None:
        """Hand the block's events to the hub, built now or when someone subscribes; the
        orders they name are read now, as of this block."""
        height = result.block.header.height
        try:
            orders = {order_id: self.final_order(order_id)
                      for order_id in orders_named(result.transactions, result.receipts, result.block_events)}

            # The closure keeps what the events need, not the block's state changes.
            block, transactions, receipts, deadline_events = (
                result.block, result.transactions, result.receipts, result.block_events
            )

            def build() -> list[ChainEvent]:
                try:
                    return block_events(block, transactions, receipts, deadline_events, orders.get)
                except Exception:  # the event stream must never stop the chain
                    log.exception("building the events of block %d failed", height)
                    return []

            self.events.publish_later(height, 1 + len(result.transactions), build)
        except Exception:  # the event stream must never stop the chain
            log.exception("publishing the events of block %d failed", height)

    def after_block(self, result: BlockResult) -> None:
        """Bookkeeping after a final block is stored (by consensus or by sync)."""
        self._committed_accounts.clear()
        self.metrics.block_stored(result)
        self._publish_events(result)
        changed_accounts = [key[1:] for key in result.changes if key[:1] == ACCOUNT and len(key) == 33]
        self.mempool.remove_committed(list(result.transactions), changed_accounts)
        self.mempool.expire(wall_clock_ms())
        height = result.block.header.height
        if self.sign_guard is not None and height % 100 == 0:
            self.sign_guard.prune(height)
            self.store.prune_proposals(height - 10)

        async def announce() -> None:
            async with self.new_block:
                self.new_block.notify_all()

        asyncio.get_running_loop().create_task(announce())

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP API and the P2P listener, then start consensus."""
        app = build_app(self)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=75)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.config.http.port, reuse_address=True)
        await site.start()
        await self.peers.start()
        await self.driver.start()
        tip = self.store.head()
        log.info(
            "node %s serving http://%s:%d p2p %s:%d chain=%s height=%d validator=%s",
            self.config.moniker,
            self.config.http.host,
            self.config.http.port,
            self.config.p2p.host,
            self.peers.listen_port,
            self.genesis.chain_id,
            tip.height,
            self.validator_address.hex() if self.validator_address else "no",
        )

    async def stop(self) -> None:
        """Stop serving and gossiping, stop consensus, close the database."""
        if self._runner is not None:
            await self._runner.cleanup()
        self.sync.stop()
        await self.driver.stop()
        if self._receiver is not None:
            self._receiver.cancel()
        await self.peers.stop()
        self._verifier.shutdown(wait=True, cancel_futures=True)
        self.workers.stop()
        self.store.close()
        log.info("node %s stopped", self.config.moniker)


async def run_node(home: Home) -> None:
    """Run a node until SIGTERM or SIGINT, then stop cleanly."""
    node = Node(home)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await node.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await node.stop()
