"""The one way the harness waits: a condition polled until a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

DEFAULT_TIMEOUT = 60.0
"""Generous deadline of every wait (a loaded 2-core machine runs several nodes)."""

POLL_INTERVAL = 0.05
"""First delay between two polls of a condition; it grows to `MAX_POLL_INTERVAL`."""

MAX_POLL_INTERVAL = 0.2
"""Longest delay between two polls of a condition."""

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    message: str | Callable[[], str] = "condition",
    interval: float = POLL_INTERVAL,
    max_interval: float = MAX_POLL_INTERVAL,
) -> T:
    """Poll `predicate` until it returns a truthy value and return that value.

    The delay between polls starts at `interval` and grows to `max_interval`. Raises
    AssertionError naming `message` (a string, or a function called on failure so it
    can add fresh context such as a log tail) after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {text}")
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval)
