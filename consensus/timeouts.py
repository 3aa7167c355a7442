"""The steps of a round and their timeouts, which grow with the round (PROTOCOL R25).

Algorithm 1 of the Tendermint paper needs `timeoutX(r) = initTimeoutX + r × timeoutDelta`
so that, after the network stabilizes, some round's timeouts are long enough for
correct validators to hear each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    """The step of a round (Algorithm 1: `step_p ∈ {propose, prevote, precommit}`)."""

    PROPOSE = "propose"
    """Waiting for the round's proposal."""
    PREVOTE = "prevote"
    """Prevoted; waiting for a prevote quorum."""
    PRECOMMIT = "precommit"
    """Precommitted; waiting for a precommit quorum or the next round."""


@dataclass(frozen=True)
class TimeoutConfig:
    """How long each step waits, in ms: `base + round × per_round` (R25)."""

    propose_base_ms: int = 3000
    """timeoutPropose of round 0."""
    propose_per_round_ms: int = 500
    """What timeoutPropose grows by per round."""
    prevote_base_ms: int = 1000
    """timeoutPrevote of round 0 (after any prevote quorum)."""
    prevote_per_round_ms: int = 500
    """What timeoutPrevote grows by per round."""
    precommit_base_ms: int = 1000
    """timeoutPrecommit of round 0 (after any precommit quorum)."""
    precommit_per_round_ms: int = 500
    """What timeoutPrecommit grows by per round."""

    def delay_ms(self, step: Step, round_number: int) -> int:
        """The timeout of `step` in round `round_number`."""
        if step is Step.PROPOSE:
            return self.propose_base_ms + round_number * self.propose_per_round_ms
        if step is Step.PREVOTE:
            return self.prevote_base_ms + round_number * self.prevote_per_round_ms
        return self.precommit_base_ms + round_number * self.precommit_per_round_ms
