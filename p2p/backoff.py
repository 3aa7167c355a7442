"""Redial timing: exponential backoff with random jitter.

Randomness is allowed here (p2p), never in consensus: the jitter spreads the redials
of many nodes that lost the same peer at the same moment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class DialState:
    """What the dialer remembers about one address."""

    failures: int = 0
    """Consecutive failed dials or lost connections since the last success."""
    next_attempt_at: float = 0.0
    """Monotonic time before which the address is not dialed."""
    dialing: bool = False
    """True while a dial (TCP connect + handshake) is in flight."""


def backoff_delay(
    failures: int, initial_s: float, max_s: float, jitter: float, rng: random.Random
) -> float:
    """Delay before the next dial after `failures` consecutive failures (≥ 1)."""
    base = min(max_s, initial_s * 2 ** max(0, min(failures - 1, 30)))
    return base * (1.0 + jitter * rng.random())
