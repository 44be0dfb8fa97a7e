"""A token bucket for per-destination rate limits."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` tokens per second, bursting to ``burst`` (default: one second's worth).

    It starts full: after a quiet spell ``burst`` calls go at once, so over any ``t`` seconds
    at most ``burst + rate * t`` go out (at 20/s with the default burst: 40 in the first
    second, 20 a second after that). ``delivery.rate_burst`` sets it."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def resize(self, rate: float, burst: float) -> None:
        """Change the rate and the size (a fleet's share changed); tokens above the new size
        are dropped."""
        self._refill()
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = min(self._tokens, self.burst)

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self) -> None:
        async with self._lock:  # FIFO: waiters are served in order
            while True:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
