"""Keeps outbound connections: persistent peers always, exchanged ones up to a limit.

Every address has a `DialState`; a failed dial or a lost connection pushes its next
attempt back by an exponential backoff with jitter. Persistent peers are redialed
forever; an exchanged address is forgotten after `max_dial_failures`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from p2p.address_book import AddressBook
from p2p.addresses import PeerAddress
from p2p.backoff import DialState, backoff_delay
from p2p.config import PeerManagerConfig

log = logging.getLogger(__name__)

RECHECK_S = 5.0
"""Longest the dialer sleeps without a reason (so that expired bans are noticed)."""


class Dialer:
    """The background task that dials; the manager tells it what is connected."""

    def __init__(
        self,
        persistent: list[PeerAddress],
        book: AddressBook,
        config: PeerManagerConfig,
        dial: Callable[[PeerAddress], Awaitable[bool]],
        is_connected: Callable[[PeerAddress], bool],
        is_refused: Callable[[PeerAddress], bool],
        outbound_count: Callable[[], int],
        rng: random.Random,
    ) -> None:
        self.persistent = persistent
        """Peers from the configuration, dialed whatever the outbound limit."""
        self.book = book
        """Addresses learned by peer exchange."""
        self._config = config
        self._dial = dial
        self._is_connected = is_connected
        self._is_refused = is_refused
        self._outbound_count = outbound_count
        self._rng = rng
        self._states: dict[tuple[str, int], DialState] = {}
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()

    def state(self, endpoint: tuple[str, int]) -> DialState:
        """The dial state of `endpoint` (created on first use)."""
        return self._states.setdefault(endpoint, DialState())

    def wake(self) -> None:
        """Re-examine the targets now (a peer left, an address arrived)."""
        self._wake.set()

    def connection_lost(self, endpoint: tuple[str, int]) -> None:
        """An outbound connection to `endpoint` ended: redial it after a backoff."""
        self._fail(self.state(endpoint))
        self.wake()

    def _fail(self, state: DialState) -> None:
        state.failures += 1
        delay = backoff_delay(
            state.failures,
            self._config.backoff_initial_s,
            self._config.backoff_max_s,
            self._config.backoff_jitter,
            self._rng,
        )
        state.next_attempt_at = time.monotonic() + delay

    def _due(self, target: PeerAddress, now: float) -> bool:
        state = self.state(target.endpoint)
        return (
            not state.dialing
            and state.next_attempt_at <= now
            and not self._is_connected(target)
            and not self._is_refused(target)
        )

    def _launch(self, target: PeerAddress, persistent: bool) -> None:
        state = self.state(target.endpoint)
        state.dialing = True
        task = asyncio.create_task(self._attempt(target, state, persistent))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    async def _attempt(self, target: PeerAddress, state: DialState, persistent: bool) -> None:
        try:
            connected = await self._dial(target)
        except Exception:
            log.exception("dialing %s failed unexpectedly", target)
            connected = False
        state.dialing = False
        if connected:
            state.failures = 0
        else:
            self._fail(state)
            if not persistent and state.failures >= self._config.max_dial_failures:
                self.book.remove(target.endpoint)
                self._states.pop(target.endpoint, None)
        self.wake()

    def _dialing_exchanged(self) -> int:
        persistent = {target.endpoint for target in self.persistent}
        return sum(
            1
            for endpoint, state in self._states.items()
            if state.dialing and endpoint not in persistent
        )

    def _pass(self) -> float:
        """Launch every due dial; return seconds until the next one may be due."""
        now = time.monotonic()
        persistent = {target.endpoint for target in self.persistent}
        for target in self.persistent:
            if self._due(target, now):
                self._launch(target, persistent=True)
        if self._config.pex:
            free = self._config.max_outbound - self._outbound_count() - self._dialing_exchanged()
            candidates = [t for t in self.book.addresses() if t.endpoint not in persistent]
            self._rng.shuffle(candidates)
            for target in candidates:
                if free <= 0:
                    break
                if self._due(target, now):
                    self._launch(target, persistent=False)
                    free -= 1
        waiting = [
            state.next_attempt_at
            for target in self.persistent + self.book.addresses()
            if not (state := self.state(target.endpoint)).dialing and state.next_attempt_at > now
        ]
        return min(RECHECK_S, max(0.0, min(waiting) - now)) if waiting else RECHECK_S

    async def run(self) -> None:
        """Dial until cancelled."""
        try:
            while True:
                timeout = self._pass()
                self._wake.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            for task in list(self._attempts):
                task.cancel()
            await asyncio.gather(*self._attempts, return_exceptions=True)
