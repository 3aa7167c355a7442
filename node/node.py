"""The node: storage, mempool, consensus, peers, block sync and the HTTP API, wired together.

This is the one place that knows every part. Each part receives only what it uses
(the store, the mempool, `PeerActions`, callbacks, the clock, its configuration
values); none of them holds the `Node`. Test-only faults are read from the
environment once, in `run_node`, and come in as a `FaultPlan` (node/fault_plan.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable
from importlib import metadata
from typing import Any

from marketplace_tx.rules.accounts import Account, load_account
from marketplace_tx.rules.order_records import Order, load_order
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import ACCOUNT
from marketplace_tx.rules.state_transition import BlockResult
from marketplace_tx.rules.validators import set_at
from mempool.pool import Mempool
from node.admission import AdmissionPipeline, mempool_limits
from node.block_sync import BlockSync
from node.consensus_driver import ConsensusDriver
from node.events import ChainEvent, EventHub, block_events, orders_named
from node.fault_plan import NO_FAULTS, FaultPlan
from node.home import Home
from node.http.metrics import NodeMetrics
from node.http.server import HttpServer
from node.http.services import HttpServices, NodeIdentity, NodeRuntime
from node.logging_setup import log_fields
from node.mempool_journal import JOURNAL_FILE, JournalEntry, JournalKeeper, MempoolJournal
from node.peer_actions import NetworkPeerActions
from node.pruning import Pruner
from node.sign_guard import SignGuard
from node.signature_workers import SignatureWorkers
from node.snapshot_serving import REQUEST_KINDS as SNAPSHOT_REQUEST_KINDS
from node.snapshot_serving import SnapshotServer
from node.snapshot_store import SnapshotStore
from node.snapshot_writer import SnapshotWriter
from node.state_restore import StateRestore
from node.state_sync import StateSync
from node.state_sync_mode import STATE_SYNC_ANSWERS, StateSyncMode, state_sync_needed
from node.storage import ChainStore
from p2p.config import PeerManagerConfig
from p2p.peer_manager import PeerManager

log = logging.getLogger("marketchain.node")


def package_version() -> str:
    """The installed marketchain version."""
    try:
        return metadata.version("marketchain")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class Node:
    """A running marketchain node: a validator if its key is in the set, else a full node."""

    def __init__(self, home: Home, faults: FaultPlan = NO_FAULTS) -> None:
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
        self.faults = faults
        """Test-only faults (none in production; node/fault_plan.py)."""
        self.clock = faults.clock()
        """The node's clock (ms): block time, R28 checks, deadlines, mempool expiry."""
        storage = home.config.storage
        self.store = ChainStore(
            home.data_directory / "chain.db",
            storage.write_buffer_bytes,
            storage.cache_bytes,
            storage.bloom_filter_bits,
            keep_state=storage.keep_state,
        )
        """The LevelDB database."""
        self.store.initialize(self.genesis)
        try:
            joining = state_sync_needed(self.store, home.config.statesync, home.data_directory)
        except Exception:
            self.store.close()
            raise
        self.events = EventHub()
        """Final blocks, tx results and order changes for `GET /events`."""
        self.metrics = NodeMetrics()
        """This node's Prometheus metrics (`GET /metrics`)."""
        self.pruner = Pruner(self.store, storage.keep_blocks, self._pruning_floor, self.metrics.registry)
        """Deletes blocks older than `[storage] keep_blocks` in the background (R40; node/pruning.py)."""
        statesync = home.config.statesync
        self.snapshots = SnapshotStore(
            home.data_directory / "snapshots", statesync.snapshot_keep
        ) if statesync.snapshot_interval else None
        """The snapshots this node writes and serves (`[statesync] snapshot_interval`, R39), if any."""
        self.snapshot_writer = SnapshotWriter(
            self.store, self.snapshots, statesync.snapshot_interval, self.metrics.registry
        ) if self.snapshots is not None else None
        """Writes a snapshot after every `snapshot_interval`-th height, in a background thread."""
        self.mempool = Mempool(
            self.genesis.chain_id,
            self.genesis.params,
            self.committed_account,
            lambda tx_hash: self.store.tx_location(tx_hash) is not None,
            mempool_limits(home.config.mempool),
        )
        """Transactions waiting for a block."""
        mempool_config = home.config.mempool
        self.journal = JournalKeeper(
            MempoolJournal(home.data_directory / JOURNAL_FILE, mempool_config.journal_max_bytes),
            self._pending_entries, self.clock, mempool_config.journal_rewrite_interval_s,
            registry=self.metrics.registry,
        ) if mempool_config.journal else None
        """The mempool journal (`[mempool] journal`; node/mempool_journal.py), if kept."""
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
            PeerManagerConfig(
                max_inbound_per_ip=self.config.p2p.max_inbound_per_ip,
                max_inbound_per_subnet=self.config.p2p.max_inbound_per_subnet,
                reserved_peers=frozenset(bytes.fromhex(key) for key in self.config.p2p.unconditional_peers),
                allow_private_peers=self.config.p2p.allow_private_peers,
                send_queue_bytes=self.config.p2p.send_queue_bytes,
                total_send_bytes=self.config.p2p.total_send_bytes,
                receive_queue_bytes=self.config.p2p.receive_queue_bytes,
                total_receive_bytes=self.config.p2p.total_receive_bytes,
            ),
            on_connect=self._on_peer_connected,
            on_disconnect=self._on_peer_disconnected,
        )
        """The peer-to-peer layer (R31, R32)."""
        self.peer_actions = NetworkPeerActions(
            self.peers, lambda: self.store.head().height, self._peer_height
        )
        """Penalize, relay to and sync from peers (R30, R32), for the parts that judge their messages."""
        self.joining = StateSyncMode(StateSync(
            genesis=self.genesis, config=home.config.statesync,
            restore=StateRestore(self.store, faults.restore_crash), send=self.peers.send, peers=self.peer_actions,
            connected=lambda: [info.node_address for info in self.peers.peers()], registry=self.metrics.registry,
            expected_peers=len(home.config.p2p.persistent_peers),
        ), lambda peer, height: self.sync.peer_height(peer, height),
            json_logs=home.config.log.format == "json") if joining else None
        """The state sync under way (node/state_sync_mode.py), or None: block sync and consensus
        wait for it (R39)."""
        self._join_task: asyncio.Task[None] | None = None
        self._joined: StateSyncMode | None = None
        self.stop_requested = asyncio.Event()
        """Set by SIGTERM/SIGINT (`run_node`) or by a failed state sync."""
        self.failure: str | None = None
        """Why the node stopped by itself (a state sync that failed), for the exit message."""
        self.snapshot_server = SnapshotServer(self.snapshots, self.store, self.peer_actions, faults.snapshot_fault)
        """Answers peers' snapshot, manifest, chunk, change-point and header requests (R39)."""
        self.driver = ConsensusDriver(
            store=self.store,
            mempool=self.mempool,
            chain_id=self.genesis.chain_id,
            params=self.genesis.params,
            peers=self.peer_actions,
            broadcast=self.peers.broadcast,
            on_block=self.after_block,
            metrics=self.metrics,
            block_time_budget_ms=self.config.consensus.block_time_budget_ms,
            validator_key=self.validator_key,
            sign_guard=self.sign_guard,
            faults=faults,
            clock=self.clock,
            forget_seen=self.peers.forget,
            sync_target=lambda: self.sync.target_height,
        )
        """The Tendermint driver (R25)."""
        self.workers = SignatureWorkers(home.config.signatures.worker_processes)
        """Worker processes for transaction checks and signatures (node/signature_workers.py)."""
        self.sync = BlockSync(
            store=self.store,
            chain_id=self.genesis.chain_id,
            params=self.genesis.params,
            send=self.peers.send,
            peers=self.peer_actions,
            run_in_order=self.driver.submit,
            on_block=self.after_block,
            on_head_moved=self.driver.resync,
            signature_known_valid=self.mempool.signature_known_valid,
            workers=self.workers,
        )
        """Block sync (R30)."""
        self.admission = AdmissionPipeline(
            self.mempool, self.workers, self.metrics, self.clock,
            self.peers.broadcast, self.peer_actions.penalize, self.driver.notify_work,
            on_admitted=self.journal.record if self.journal is not None else None,
            received_bytes_per_peer=mempool_config.gossip_queue_bytes_per_peer,
            received_bytes=mempool_config.gossip_queue_bytes,
            is_syncing=lambda: self.sync.syncing,
        )
        """Admission of transactions from clients and peers, and their gossip (R10; node/admission.py)."""
        self._committed_accounts: dict[bytes, Account] = {}
        self.started_at = time.time()
        """When this process started (s since the epoch)."""
        self.runtime = NodeRuntime(
            identity=NodeIdentity(self.node_key.address, self.config.moniker, self.version, self.config.p2p.host),
            genesis=self.genesis,
            store=self.store,
            mempool=self.mempool,
            events=self.events,
            consensus=self.driver,
            sync=self.sync,
            peers=self.peers,
            workers=self.workers,
            validator_address=lambda: self.validator_address,
            database_directory=home.data_directory / "chain.db",
            started_at=self.started_at,
            state_sync=lambda: None if self.joining is None else self.joining.progress(),
        )
        """The live parts `/status` and the scrape metrics report."""
        self.metrics.watch(self.runtime)
        self.http = HttpServer(
            HttpServices(
                genesis=self.genesis,
                store=self.store,
                mempool=self.mempool,
                submitter=self.admission,
                events=self.events,
                metrics=self.metrics,
                limits=self.config.http,
                runtime=self.runtime,
                snapshots=self.snapshots,
            ),
            self.config.http.host,
            self.config.http.port,
        )
        """The HTTP API (node/http/), started by `start`."""

    @property
    def validator_address(self) -> bytes | None:
        """This node's validator address, if its key is in the current set."""
        key = self.validator_key
        if key is None or self.joining is not None:  # no state to read yet while joining
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

    # --- transactions ----------------------------------------------------------------

    def _pruning_floor(self) -> int | None:
        """The oldest snapshot this node serves (`self.snapshots`, node/snapshot_store.py), or
        None: pruning keeps the blocks from it on, whose header and commit it serves (R40)."""
        return None if self.snapshots is None else self.snapshots.oldest_height()

    def _pending_entries(self) -> list[JournalEntry]:
        """The pending transactions as journal records, in the order to admit them again."""
        return [JournalEntry(tx.raw, admitted_ms) for tx, admitted_ms in self.mempool.pending()]

    def _receive_txs(self, peer: bytes, body: Any) -> None:
        self.admission.receive(peer, body)

    # --- peers -----------------------------------------------------------------------

    def _status_body(self) -> dict[str, Any]:
        tip = self.store.head()
        return {"height": tip.height, "block_hash": tip.block_hash}

    def _peer_height(self, peer: bytes, height: int) -> None:
        """A peer's claimed height: to block sync, or kept for it while a state sync runs."""
        if self.joining is not None:
            self.joining.heard(peer, height)
        else:
            self.sync.peer_height(peer, height)

    def _on_peer_connected(self, peer: bytes) -> None:
        self.peers.send(peer, "status", self._status_body())
        if self.joining is not None:
            self.joining.peer_connected(peer)
        self.driver.send_current_messages(peer, self.peers.send)

    def _on_peer_disconnected(self, peer: bytes) -> None:
        self.sync.peer_gone(peer)
        if self.joining is not None:
            self.joining.peer_gone(peer)
        self.snapshot_server.forget(peer)

    def _on_message(self, peer: bytes, kind: str, body: Any) -> Awaitable[None] | None:
        """Hand a peer's message to its part; consensus messages return an awaitable that
        the peer's dispatch waits for (back-pressure while the driver's queue is full)."""
        if kind in STATE_SYNC_ANSWERS:
            joining = self.joining or self._joined  # after it: late answers ignored, others charged
            if joining is not None:
                joining.receive(peer, kind, body)
            else:
                self.peer_actions.penalize(peer, 5, f"unsolicited {kind}")  # this node asks nothing (R32)
            return None
        if self.joining is not None and kind in ("txs", "proposal", "vote", "evidence"):
            return None  # no state to check them against until the snapshot is restored (R39)
        if kind == "txs":
            self._receive_txs(peer, body)
        elif kind == "proposal":
            return self.driver.receive_proposal(peer, body)
        elif kind == "vote":
            return self.driver.receive_vote(peer, body)
        elif kind == "evidence":
            return self.driver.receive_evidence(peer, body)
        elif kind == "status":
            height = body.get("height") if isinstance(body, dict) else None
            if isinstance(height, int) and not isinstance(height, bool) and height >= 0:
                self.peer_actions.maybe_sync(peer, height)  # a claim: block sync checks it (R30)
            else:
                self.peer_actions.penalize(peer, 5, "status without a height")
        elif kind == "block_request":
            self.sync.serve(peer, body)
        elif kind == "block_response":
            self.sync.receive(peer, body)
        elif kind in SNAPSHOT_REQUEST_KINDS:
            self.snapshot_server.serve(peer, kind, body)

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
                    log.exception("building the events of block %d failed", height,
                                  extra=log_fields(event="events_failed", height=height))
                    return []

            self.events.publish_later(height, 1 + len(result.transactions), build)
        except Exception:  # the event stream must never stop the chain
            log.exception("publishing the events of block %d failed", height,
                          extra=log_fields(event="events_failed", height=height))

    def after_block(self, result: BlockResult) -> None:
        """Bookkeeping after a final block is stored (by consensus or by sync)."""
        self._committed_accounts.clear()
        self.metrics.block_stored(result)
        self._publish_events(result)
        changed_accounts = [key[1:] for key in result.changes if key[:1] == ACCOUNT and len(key) == 33]
        self.mempool.remove_committed(list(result.transactions), changed_accounts)
        self.mempool.expire(self.clock())
        height = result.block.header.height
        if self.sign_guard is not None and height % 100 == 0:
            self.sign_guard.prune(height)
            self.store.prune_proposals(height - 10)
        self.pruner.after_block(height)
        if self.snapshot_writer is not None:
            self.snapshot_writer.after_block(height)

        async def announce() -> None:
            async with self.new_block:
                self.new_block.notify_all()

        asyncio.get_running_loop().create_task(announce())

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Admit the mempool journal's transactions again, open the HTTP API and the P2P
        listener, then start consensus; when joining by state sync, consensus and the rest
        start once the snapshot is restored (`_join`)."""
        await self.http.start()
        await self.peers.start()
        if self.joining is None:
            await self._start_chain()
        else:
            self._join_task = asyncio.get_running_loop().create_task(self._join(self.joining))
        tip = self.store.head()
        validator = self.validator_address.hex() if self.validator_address else "no"
        log.info(
            "node %s serving http://%s:%d p2p %s:%d chain=%s height=%d validator=%s",
            self.config.moniker,
            self.config.http.host,
            self.config.http.port,
            self.config.p2p.host,
            self.peers.listen_port,
            self.genesis.chain_id,
            tip.height,
            validator,
            extra=log_fields(
                event="node_started", moniker=self.config.moniker, http_port=self.config.http.port,
                p2p_port=self.peers.listen_port, chain_id=self.genesis.chain_id, height=tip.height,
                validator=validator,
            ),
        )

    async def _start_chain(self) -> None:
        """What reads the state and blocks: the mempool journal, consensus, pruning, snapshots."""
        if self.journal is not None:
            await self.journal.restore(self.admission.readmit, self.mempool.limits.ttl_ms)
            self.journal.start()
        await self.driver.start()
        self.pruner.start()
        if self.snapshot_writer is not None:
            self.snapshot_writer.start()

    async def _join(self, joining: StateSyncMode) -> None:
        """Join by state sync (R39), then block sync from H + 1 and consensus; a failure of
        the restore itself (not of a peer) is logged and stops the node."""
        async def then() -> None:
            self.joining, self._joined = None, joining
            self._committed_accounts.clear()
            await self._start_chain()
            validator = self.validator_address
            log.info("block sync continues from height %d; consensus started (validator=%s)",
                     self.store.head().height + 1, validator.hex() if validator else "no",
                     extra=log_fields(event="statesync_handover", height=self.store.head().height,
                                      validator=validator.hex() if validator else "no"))

        try:
            await joining.run(then)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("state sync failed; stopping (a restart resumes or starts over)",
                          extra=log_fields(event="statesync_error"))
            self.failure = "state sync failed (see the log); a restart resumes or starts over"
            self.stop_requested.set()

    async def stop(self) -> None:
        """Stop serving and gossiping, stop consensus, close the database."""
        if self._join_task is not None and not self._join_task.done():
            self._join_task.cancel()
            await asyncio.gather(self._join_task, return_exceptions=True)
        if self.joining is not None:
            await self.joining.state_sync.idle()  # a chunk batch being written finishes first
        await self.http.stop()
        self.sync.stop()
        await self.driver.stop()
        self.admission.close()
        if self.journal is not None:
            await self.journal.stop()
        await self.peers.stop()
        self.workers.stop(wait=True)
        self.pruner.stop()
        if self.snapshot_writer is not None:
            self.snapshot_writer.stop()
        self.store.close()
        log.info("node %s stopped", self.config.moniker,
                 extra=log_fields(event="node_stopped", moniker=self.config.moniker))


async def run_node(home: Home) -> None:
    """Run a node until SIGTERM or SIGINT, then stop cleanly; test-only faults are read
    from the environment here, once (node/fault_plan.py)."""
    node = Node(home, FaultPlan.from_environment(os.environ))
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, node.stop_requested.set)
    try:
        await node.start()
        await node.stop_requested.wait()
        log.info("stopping", extra=log_fields(event="node_stopping"))
    finally:
        await node.stop()
    if node.failure is not None:
        raise SystemExit(f"marketchain: {node.failure}")
