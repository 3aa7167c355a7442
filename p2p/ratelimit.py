"""Token buckets that bound what one peer may send (R32: a flooding peer is throttled)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Holds up to `capacity` tokens and regains `rate` tokens per second."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        """Tokens regained per second."""
        self.capacity = capacity
        """Most tokens held: the burst allowed after a quiet period."""
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def take(self, amount: float = 1.0) -> bool:
        """Take `amount` tokens if available; False (and nothing taken) otherwise."""
        self._refill()
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True

    def charge(self, amount: float) -> None:
        """Take `amount` tokens even if that leaves a debt, repaid by the refill before
        `wait_s` reaches 0 again (work already done is paid for by waiting)."""
        self._refill()
        self._tokens -= amount

    def wait_s(self) -> float:
        """Seconds until the bucket is out of debt (0 if it holds tokens)."""
        tokens = self.tokens()
        return 0.0 if tokens >= 0 else -tokens / self.rate


class RateLimiter:
    """A message bucket and a byte bucket for one peer."""

    def __init__(
        self,
        messages_per_s: float,
        message_burst: float,
        bytes_per_s: float,
        byte_burst: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.messages = TokenBucket(messages_per_s, message_burst, clock)
        """Counts messages."""
        self.bytes = TokenBucket(bytes_per_s, byte_burst, clock)
        """Counts frame bytes."""

    def allow(self, size: int) -> bool:
        """Admit one message of `size` bytes, or refuse it without charging either bucket."""
        if self.messages.tokens() < 1 or self.bytes.tokens() < size:
            return False
        self.messages.take(1)
        self.bytes.take(size)
        return True
