"""The node while it joins by state sync (PROTOCOL R39): what runs, what waits, what is kept.

`state_sync_needed` decides at start: `[statesync] enable` and a store still at genesis
(or a restore interrupted earlier). A store found mid-restore without `enable` refuses
to start (`ConfigError`): its state is partial and must not be served.

`StateSyncMode` runs the `StateSync` (node/state_sync.py) with its progress reporter.
While it runs, block sync requests nothing and consensus is not started: the heights
peers claim (`status`) are kept (one per connected peer) and handed to block sync once
the snapshot is restored, so that it continues from H + 1 at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from node.config import ConfigError, StatesyncConfig
from node.logging_setup import log_fields
from node.state_sync import StateSync
from node.state_sync_progress import ProgressReporter
from node.storage import ChainStore

log = logging.getLogger("marketchain.statesync")

STATE_SYNC_ANSWERS = frozenset({"snapshots", "manifest", "chunk", "light_changes", "header"})
"""P2P kinds that answer a joining node's requests (node/state_sync.py)."""


def state_sync_needed(store: ChainStore, config: StatesyncConfig, data_directory: Any) -> bool:
    """True if this node must join by state sync now; `ConfigError` if a restore was
    interrupted and state sync is not enabled (the partial state must not be served)."""
    restoring = store.restoring
    if restoring and not config.enable:
        raise ConfigError("a state sync was interrupted: the database holds a partial snapshot. Start with "
                          "[statesync] enable = true (or MARKETCHAIN_STATESYNC_ENABLE=true) to resume it, "
                          f"or delete {data_directory} to start from genesis")
    if not config.enable:
        return False
    head = store.head()
    if restoring or head is None or head.height == 0:
        return True
    log.info("state sync is enabled but not needed: the node already has blocks up to %d", head.height,
             extra=log_fields(event="statesync_not_needed", height=head.height))
    return False


class StateSyncMode:
    """Runs a state sync, then hands over to block sync and consensus."""

    def __init__(self, state_sync: StateSync, forward_height: Callable[[bytes, int], None],
                 json_logs: bool) -> None:
        self.state_sync = state_sync
        """The joiner (node/state_sync.py)."""
        self.forward_height = forward_height
        """Block sync's `peer_height`, called for every height heard meanwhile once done."""
        self.active = True
        """True until the restore finished (or was given up)."""
        self.reporter = ProgressReporter(state_sync.progress, sys.stderr,
                                         bar=not json_logs and sys.stderr.isatty())
        """The log lines and the terminal bar."""
        self._heard: dict[bytes, int] = {}
        state_sync.claimed_height = self._heard.get

    def progress(self) -> dict[str, Any] | None:
        """The state sync's progress while it runs (for `/status` and the 503s), else None."""
        return self.state_sync.progress() if self.active else None

    def heard(self, peer: bytes, height: int) -> None:
        """A peer claims `height` (status): kept, handed to block sync when the restore is done."""
        if height > self._heard.get(peer, -1):
            self._heard[peer] = height

    def peer_connected(self, peer: bytes) -> None:
        """A new peer: ask it which snapshots it offers."""
        self.state_sync.peer_connected(peer)

    def peer_gone(self, peer: bytes) -> None:
        """A peer left: forget its claim and its offers."""
        self._heard.pop(peer, None)
        self.state_sync.peer_gone(peer)

    def receive(self, peer: bytes, kind: str, body: Any) -> None:
        """An answer to one of the joiner's requests."""
        self.state_sync.receive(peer, kind, body)

    async def run(self, then: Callable[[], Awaitable[None]]) -> int | None:
        """Restore a snapshot, then `then()` (start block sync and consensus); the height restored or None."""
        self.reporter.start()
        try:
            height = await self.state_sync.run()
        finally:
            self.reporter.stop()
        self.active = False
        await then()
        heard, self._heard = self._heard, {}
        for peer, claimed in heard.items():
            self.forward_height(peer, claimed)
        return height
