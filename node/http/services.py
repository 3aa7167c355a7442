"""What the HTTP API and the scrape metrics read of a running node: narrow, typed parts.

`build_app` takes an `HttpServices`; handlers read `request.app[SERVICES_KEY].store`
and the like, never the whole node. `NodeRuntime` is the live state `/status` and
`GET /metrics` report (consensus, sync, peers, workers); the node assembles both in
node/node.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.admission import check_stateless

if TYPE_CHECKING:
    from consensus.state import ConsensusState
    from mempool.pool import Mempool
    from node.block_budget import BlockBudget
    from node.config import HttpConfig
    from node.events import EventHub
    from node.http.metrics import NodeMetrics
    from node.signature_workers import SignatureWorkers
    from node.snapshot_store import SnapshotStore
    from node.storage import ChainStore
    from p2p.peer_manager import PeerManager


class TransactionSubmitter(Protocol):
    """Admission of transactions sent to the API (R10): the node's admission pipeline."""

    def submit(self, raw: bytes) -> Transaction:
        """Admit one transaction, gossip it and wake consensus; raises `AdmissionError` (R12)."""
        ...

    async def submit_many(self, raws: Sequence[bytes]) -> list[Transaction | AdmissionError]:
        """Admit transactions in order; per transaction the admitted one or its `AdmissionError`."""
        ...


class ConsensusView(Protocol):
    """What is reported of the consensus driver."""

    @property
    def state(self) -> ConsensusState:
        """The core's state (height, round, step, started)."""
        ...

    @property
    def budget(self) -> BlockBudget:
        """The proposal size cap from the block time budget."""
        ...


class SyncView(Protocol):
    """What is reported of block sync (R30)."""

    @property
    def target_height(self) -> int:
        """The highest height a peer has reported."""
        ...

    @property
    def syncing(self) -> bool:
        """True while the node is more than one block behind a peer that proved its claim (node/block_sync.py)."""
        ...

    def progress(self) -> dict[str, Any]:
        """Heights done and to go."""
        ...


@dataclass(frozen=True)
class NodeIdentity:
    """Who the node is, as `/status` and `marketchain_info` report it."""

    node_id: bytes
    """The node's P2P identity (address of its node key)."""
    moniker: str
    """The operator's name for the node."""
    version: str
    """The installed marketchain version."""
    p2p_host: str
    """The host the P2P listener is bound to."""


@dataclass(frozen=True)
class NodeRuntime:
    """The running parts of a node that `/status` and the scrape metrics read."""

    identity: NodeIdentity
    """Who the node is."""
    genesis: Genesis
    """The chain's genesis."""
    store: ChainStore
    """The chain database."""
    mempool: Mempool
    """Transactions waiting for a block."""
    events: EventHub
    """The event stream hub (`GET /events`)."""
    consensus: ConsensusView
    """The consensus driver."""
    sync: SyncView
    """Block sync."""
    peers: PeerManager
    """The peer-to-peer layer (connected peers, scores, counters, listen port)."""
    workers: SignatureWorkers
    """The signature worker processes."""
    validator_address: Callable[[], bytes | None]
    """This node's validator address, if its key is in the current set."""
    database_directory: Path
    """The LevelDB directory (its size on disk is a metric)."""
    started_at: float
    """When this process started (s since the epoch)."""
    state_sync: Callable[[], dict[str, Any] | None] = lambda: None
    """The progress of the state sync under way (node/state_sync.py), or None when the node
    is not restoring a snapshot: while it is, `/status` says `"syncing": "state"` and reads
    of the state answer 503 `syncing` (node/http/state_sync_gate.py)."""


@dataclass(frozen=True)
class HttpServices:
    """Everything the API handlers use."""

    genesis: Genesis
    """The chain's genesis (chain id, parameters)."""
    store: ChainStore
    """The chain database (blocks, commits, state, indexes)."""
    mempool: Mempool
    """Pending transactions (`GET /txs/{hash}`, pending nonces)."""
    submitter: TransactionSubmitter
    """Admission of submitted transactions (`POST /txs`, `POST /txs/batch`)."""
    events: EventHub
    """The event stream hub (`GET /events`)."""
    metrics: NodeMetrics
    """The node's metrics (`GET /metrics`, request latency)."""
    limits: HttpConfig
    """The `[http]` configuration: body, batch and rate limits."""
    runtime: NodeRuntime
    """The live parts `/status` reports."""
    snapshots: SnapshotStore | None = None
    """The snapshots this node serves (`GET /snapshots*`, R39), or None if it writes none."""

    @staticmethod
    def hash_of(raw: bytes) -> bytes:
        """A transaction's hash (R9)."""
        return hashlib.sha256(raw).digest()

    def decode_committed(self, raw: bytes) -> Transaction:
        """Decode a transaction already final in a block (its checks passed before)."""
        return check_stateless(raw, self.genesis.chain_id, self.genesis.params, verify_signature=False)


SERVICES_KEY = web.AppKey("services", HttpServices)
"""Application key of the handlers' `HttpServices`."""
