"""The node's clock and its test-only faults, decided once where the node is assembled.

Fault tests (tests/e2e/fault_scenarios.py, docs/faults.md) start nodes with two
environment variables; `FaultPlan.from_environment` reads them once, in `run_node`, and
the plan is handed to the parts that act on it (the consensus driver, the node's clock).
Nothing else reads the environment for faults. The default plan has no fault.

- `MARKETCHAIN_TEST_CLOCK_SKEW_MS=N` (an integer, negative for a clock behind) is added
  to the node's clock: block time, the R28 timeliness check, evidence checks, order
  deadlines and mempool expiry all see it.
- `MARKETCHAIN_TEST_FAULT=equivocate`: the validator also signs and gossips a
  conflicting prevote in every round, so that the others catch it as evidence (R27).
- `MARKETCHAIN_TEST_RESTORE_CRASH=POINT`: the state-sync restore kills its own process
  (SIGKILL) at that point: `begin`, `wipe`, `chunk:<k>`, `before_finish`, `after_finish`
  (node/state_restore.py, kill -9 tests).
- `MARKETCHAIN_TEST_SNAPSHOT_FAULT=corrupt_chunk|wrong_manifest|unfinal|silent`: the node
  serves snapshots as a hostile peer (node/snapshot_serving.py), for the state-sync tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger("marketchain.consensus")

CLOCK_SKEW_VARIABLE = "MARKETCHAIN_TEST_CLOCK_SKEW_MS"
"""Environment variable: test-only offset (ms) added to the node's clock."""
FAULT_VARIABLE = "MARKETCHAIN_TEST_FAULT"
"""Environment variable: test-only misbehaviour (`equivocate`)."""
RESTORE_CRASH_VARIABLE = "MARKETCHAIN_TEST_RESTORE_CRASH"
"""Environment variable: test-only crash point of the state-sync restore (node/state_restore.py)."""
SNAPSHOT_FAULT_VARIABLE = "MARKETCHAIN_TEST_SNAPSHOT_FAULT"
"""Environment variable: test-only hostile snapshot serving (node/snapshot_serving.py)."""
SNAPSHOT_FAULTS = frozenset({"corrupt_chunk", "wrong_manifest", "unfinal", "silent"})
"""The values `SNAPSHOT_FAULT_VARIABLE` may take."""

Clock = Callable[[], int]
"""A source of time in ms since the Unix epoch."""


def wall_clock_ms() -> int:
    """The true clock in ms since the Unix epoch (no test skew)."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class FaultPlan:
    """Test-only faults of one node; the default is none (production)."""

    clock_skew_ms: int = 0
    """Added to the node's clock (ms; negative for a clock behind), R28 tests."""
    equivocate: bool = False
    """Sign a conflicting prevote besides every prevote, bypassing the sign guard (R27 tests)."""
    restore_crash: str | None = None
    """Where the state-sync restore kills its process (`StateRestore`'s `crash_at`), kill -9 tests."""
    snapshot_fault: str | None = None
    """Serve snapshots as a hostile peer (`corrupt_chunk`, `wrong_manifest`, `unfinal`,
    `silent`; node/snapshot_serving.py), R39 tests of a joining node."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> FaultPlan:
        """The plan `environ` asks for, with a warning logged for each fault that is on.

        A clock skew that is not an integer is ignored (with a warning)."""
        skew = 0
        setting = environ.get(CLOCK_SKEW_VARIABLE)
        if setting:
            try:
                skew = int(setting)
            except ValueError:
                log.warning("%s=%r is not an integer; ignored", CLOCK_SKEW_VARIABLE, setting)
            else:
                log.warning("TEST CLOCK SKEW ACTIVE: %s=%d ms is added to this clock", CLOCK_SKEW_VARIABLE, skew)
        equivocate = environ.get(FAULT_VARIABLE) == "equivocate"
        if equivocate:
            log.warning("TEST FAULT ACTIVE: this validator will equivocate")
        restore_crash = environ.get(RESTORE_CRASH_VARIABLE) or None
        if restore_crash:
            log.warning("TEST FAULT ACTIVE: the state-sync restore will kill this node at %s", restore_crash)
        snapshot_fault = environ.get(SNAPSHOT_FAULT_VARIABLE) or None
        if snapshot_fault is not None and snapshot_fault not in SNAPSHOT_FAULTS:
            log.warning("%s=%r is not one of %s; ignored", SNAPSHOT_FAULT_VARIABLE, snapshot_fault,
                        ", ".join(sorted(SNAPSHOT_FAULTS)))
            snapshot_fault = None
        elif snapshot_fault is not None:
            log.warning("TEST FAULT ACTIVE: this node serves snapshots as a hostile peer (%s)", snapshot_fault)
        return cls(clock_skew_ms=skew, equivocate=equivocate, restore_crash=restore_crash,
                   snapshot_fault=snapshot_fault)

    def clock(self) -> Clock:
        """The node's clock under this plan: the wall clock plus the skew."""
        skew = self.clock_skew_ms
        if not skew:
            return wall_clock_ms

        def skewed_clock_ms() -> int:
            return wall_clock_ms() + skew

        return skewed_clock_ms


NO_FAULTS = FaultPlan()
"""The production plan: no test fault."""
