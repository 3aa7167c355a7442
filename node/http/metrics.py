"""Prometheus metrics of one node: `GET /metrics` (PROTOCOL §10, docs/operations.md).

Each node has its own `CollectorRegistry` (never the process-global one), so that two
nodes in one process do not mix. Two kinds of metrics:

- **event metrics**, updated where the thing happens: blocks and transactions made final
  (`Node.after_block`), finality time and rounds (consensus driver), block build,
  validation and commit time, signature checks, admissions, HTTP latency (middleware);
- **scrape metrics**, read from the node's `NodeRuntime` (node/http/services.py) when
  `/metrics` is fetched (`NodeCollector`):
  height, mempool, peers and their scores, P2P counters, LevelDB size, sync, event
  stream subscribers.

Every name starts with `marketchain_`; docs/api.md lists them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketplace_tx.rules.state_transition import BlockResult

if TYPE_CHECKING:
    from node.http.services import NodeRuntime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format."""
STREAMING_ROUTES = frozenset({"/events"})
"""Routes whose responses last as long as the client listens: not in the latency histogram."""
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods kept as labels; any other is counted as `other` (bounded label values)."""

SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FINALITY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
ROUND_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
TXS_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class NodeMetrics:
    """The metrics of one node and its registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        """This node's registry; `/metrics` renders it."""
        registry = self.registry
        self.blocks = Counter("marketchain_blocks", "Final blocks stored by this node.", registry=registry)
        self.txs = Counter(
            "marketchain_txs_committed", "Transactions in final blocks, by outcome (ok or failed).",
            ["result"], registry=registry,
        )
        self.block_txs = Histogram(
            "marketchain_block_txs", "Transactions per final block.", buckets=TXS_BUCKETS, registry=registry
        )
        self.finality = Histogram(
            "marketchain_finality_seconds",
            "From the start of a height's first round (work or a proposal arrived) to its decision.",
            buckets=FINALITY_BUCKETS, registry=registry,
        )
        self.rounds = Histogram(
            "marketchain_consensus_rounds", "Rounds a height took to decide (1 = decided in round 0).",
            buckets=ROUND_BUCKETS, registry=registry,
        )
        self.block_apply = Histogram(
            "marketchain_block_apply_seconds",
            "Block execution and storage time by stage: build (proposer), validate (a proposal), commit (LevelDB batch).",
            ["stage"], buckets=SECONDS_BUCKETS, registry=registry,
        )
        self.signature_checks = Counter(
            "marketchain_signature_checks",
            "Ed25519 signatures verified, by kind: tx_admission, tx_block, vote, proposal, commit, evidence.",
            ["kind"], registry=registry,
        )
        self.admitted = Counter(
            "marketchain_txs_admitted", "Transactions admitted to the mempool, by source (http, p2p).",
            ["source"], registry=registry,
        )
        self.rejected = Counter(
            "marketchain_txs_rejected", "Transactions refused by admission, by R12 code.", ["code"], registry=registry
        )
        self.http_latency = Histogram(
            "marketchain_http_request_duration_seconds",
            "HTTP API request latency by route template, method and status.",
            ["route", "method", "status"], buckets=SECONDS_BUCKETS, registry=registry,
        )

    def watch(self, runtime: NodeRuntime) -> None:
        """Report the scrape metrics of `runtime` (once the node's parts exist)."""
        self.registry.register(NodeCollector(runtime))

    def block_stored(self, result: BlockResult) -> None:
        """A final block was stored (consensus or sync)."""
        self.blocks.inc()
        self.block_txs.observe(len(result.transactions))
        failed = sum(1 for receipt in result.receipts if not receipt.ok)
        if failed:
            self.txs.labels("failed").inc(failed)
        if len(result.receipts) > failed:
            self.txs.labels("ok").inc(len(result.receipts) - failed)

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Time spent building, validating or committing a block."""
        self.block_apply.labels(stage).observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


def directory_bytes(path: Path) -> int:
    """Total size of the files directly in `path` (0 if it is gone)."""
    try:
        return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
    except OSError:
        return 0


def _gauge(name: str, documentation: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels) if labels else None)
    family.add_metric(list(labels.values()) if labels else [], value)
    return family


class NodeCollector(Collector):
    """Metrics read from the node at scrape time."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        """The running parts of the node that are read."""

    def collect(self) -> Iterator[Metric]:
        """Every scrape metric, read now."""
        runtime = self.runtime
        tip = runtime.store.head()
        height = tip.height if tip is not None else 0
        identity = runtime.identity
        yield _gauge("marketchain_info", "Constant 1, labelled with the node's identity.", 1, {
            "chain_id": runtime.genesis.chain_id, "node_id": identity.node_id.hex(), "version": identity.version,
            "moniker": identity.moniker,
        })
        yield _gauge("marketchain_height", "Height of the last final block.", height)
        yield _gauge("marketchain_latest_block_time_seconds", "Block time of the last final block.",
                     tip.time / 1000 if tip is not None and height else 0)
        yield _gauge("marketchain_validator", "1 if this node's key is in the current validator set.",
                     1 if runtime.validator_address() is not None else 0)
        yield _gauge("marketchain_consensus_height", "Height consensus is working on.", runtime.consensus.state.height)
        yield _gauge("marketchain_consensus_round", "Current consensus round.", runtime.consensus.state.round)
        yield _gauge("marketchain_mempool_transactions", "Transactions waiting in the mempool.", len(runtime.mempool))
        yield _gauge("marketchain_mempool_bytes", "Bytes of transactions waiting in the mempool.", runtime.mempool.size_bytes)
        yield from self._peers()
        yield _gauge("marketchain_leveldb_bytes", "Bytes of the LevelDB directory on disk (tables and logs).",
                     directory_bytes(runtime.database_directory))
        yield _gauge("marketchain_leveldb_approximate_bytes",
                     "LevelDB's own estimate of its table files (excludes data still in the log).",
                     runtime.store.approximate_size())
        yield _gauge("marketchain_sync_target_height",
                     "Highest height claimed by a peer that proved it by delivering a verified block.",
                     runtime.sync.target_height)
        yield _gauge("marketchain_sync_height", "Height block sync has reached (the chain height).", height)
        yield _gauge("marketchain_syncing", "1 while the node is more than one block behind a peer that proved its claim.",
                     1 if runtime.sync.syncing else 0)
        yield from self._events()
        workers = runtime.workers
        yield _gauge("marketchain_signature_worker_processes",
                     "Signature worker processes running now (node/signature_workers.py).",
                     workers.processes if workers.running else 0)
        jobs = CounterMetricFamily("marketchain_signature_worker_jobs",
                                   "Jobs (transaction chunks, fetched blocks) the signature workers answered.")
        jobs.add_metric([], workers.jobs_done)
        yield jobs
        yield from self._block_budget()
        yield _gauge("marketchain_start_time_seconds", "When the node process started (Unix time).", runtime.started_at)

    def _block_budget(self) -> Iterator[Metric]:
        budget = self.runtime.consensus.budget
        limit = budget.transaction_limit()
        yield _gauge("marketchain_block_transaction_limit",
                     "Most transactions this node puts in its next proposal (time budget; 0: genesis limits only).",
                     limit or 0)

    def _peers(self) -> Iterator[Metric]:
        peers = self.runtime.peers.peers()
        yield _gauge("marketchain_peers", "Connected peers.", len(peers))
        scores = GaugeMetricFamily("marketchain_peer_score", "Score of each connected peer (R32).",
                                   labels=["peer", "direction"])
        for peer in peers:
            scores.add_metric([peer.node_address.hex(), peer.direction], peer.score)
        yield scores
        counters = self.runtime.peers.counters
        for field in dataclasses.fields(counters):
            value = getattr(counters, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                family = CounterMetricFamily(f"marketchain_p2p_{field.name}", f"P2P counter `{field.name}`.")
                family.add_metric([], value)
                yield family

    def _events(self) -> Iterator[Metric]:
        hub = self.runtime.events
        yield _gauge("marketchain_events_subscribers", "Open /events streams.", len(hub.subscriptions))
        published = CounterMetricFamily("marketchain_events_published", "Events published to /events.")
        published.add_metric([], hub.published)
        yield published
        dropped = CounterMetricFamily("marketchain_events_dropped_subscribers",
                                      "/events streams dropped because the client fell behind.")
        dropped.add_metric([], hub.dropped)
        yield dropped


# --- HTTP ----------------------------------------------------------------------------


METRICS_KEY = web.AppKey("metrics", NodeMetrics)
"""Application key of the node's metrics."""


def route_label(request: web.Request) -> str:
    """The route template that served `request` (`/txs/{hash}`), or `unmatched`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Time every request by route template, method and status (outside the error middleware)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        route = route_label(request)
        if route not in STREAMING_ROUTES:
            method = request.method if request.method in HTTP_METHODS else "other"
            request.app[METRICS_KEY].http_latency.labels(route, method, str(status)).observe(
                time.perf_counter() - started
            )


async def get_metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus text format."""
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
