"""The state-sync metrics of a joining node (`GET /metrics`, docs/api.md; PROTOCOL R39).

- `marketchain_statesync_chunks_total`: chunks of the snapshot being restored (gauge);
- `marketchain_statesync_chunks_done`: chunks of it checked and written (gauge);
- `marketchain_statesync_bad_chunks_total`: chunks refused because they failed against the
  manifest their sender served (counter);
- `marketchain_statesync_bad_manifests_total`: manifests refused (not for the verified
  header, not folding to its state_root) or dropped after two peers' chunks failed (counter).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge


class StateSyncMetrics:
    """The four `marketchain_statesync_*` metrics, in the node's registry (a private one if none)."""

    def __init__(self, registry: Any = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.chunks_total = Gauge("marketchain_statesync_chunks_total",
                                  "Chunks of the snapshot this node is restoring by state sync.", registry=registry)
        """Chunks of the chosen manifest."""
        self.chunks_done = Gauge("marketchain_statesync_chunks_done",
                                 "Chunks of that snapshot checked and written.", registry=registry)
        """Chunks written."""
        self.bad_chunks = Counter("marketchain_statesync_bad_chunks",
                                  "Chunks refused: they failed against the manifest their sender served (R39).",
                                  registry=registry)
        """Chunks refused (exposed as `…_bad_chunks_total`)."""
        self.bad_manifests = Counter("marketchain_statesync_bad_manifests",
                                     "Manifests refused or dropped (R39).", registry=registry)
        """Manifests refused (exposed as `…_bad_manifests_total`)."""

    def chosen(self, total: int, done: int) -> None:
        """A manifest was chosen (or a restore resumed) with `done` of `total` chunks written."""
        self.chunks_total.set(total)
        self.chunks_done.set(done)

    def chunk_done(self) -> None:
        """One more chunk written."""
        self.chunks_done.inc()

    def bad_chunk(self) -> None:
        """A chunk refused."""
        self.bad_chunks.inc()

    def bad_manifest(self) -> None:
        """A manifest refused or dropped."""
        self.bad_manifests.inc()
