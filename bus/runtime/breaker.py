"""A per-destination circuit breaker.

closed ──(N consecutive failures, or failure rate ≥ R over the last W calls)──▶ open
open ──(cooldown elapsed)──▶ half-open: one probe delivery at a time
half-open ──probe succeeds──▶ closed;  probe fails ──▶ open again (cooldown restarts)

While the breaker is open, deliveries wait (:meth:`CircuitBreaker.wait`) instead of calling the
destination and spending their retry budget. With ``delivery.scope: fleet`` the instances tell
each other when a breaker opens or closes (:mod:`esb.bus.runtime.fleet`), and
:meth:`CircuitBreaker.force` applies what another instance saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5
    failure_rate: float = 1.0
    window: int = 20
    cooldown: float = 30.0


class CircuitBreaker:
    """``on_change(state)`` is told when this breaker opens or closes by its own calls' outcomes
    (not when :meth:`force` moves it: that came from elsewhere)."""

    def __init__(self, settings: BreakerSettings,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_change = on_change
        self.state = "closed"
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=settings.window)
        self._opened_at = 0.0
        self._probing = False
        self._changed = asyncio.Event()

    async def wait(self) -> None:
        """Return when a call may go ahead (at once unless open, or half-open with a probe
        already out)."""
        if self.state == "closed":
            return
        # Open: until the cooldown ends; half-open with the probe out: until its outcome.
        while (remaining := self.refuses()) is not None:
            await self._sleep_or_change(remaining if self.state == "open"
                                        else self.settings.cooldown)

    def refuses(self) -> float | None:
        """For a caller that cannot wait (request/reply): None when a call may go ahead now
        (taking the half-open probe), else about how many seconds until one may."""
        if self.state == "open":
            remaining = self.cooldown_left()
            if remaining > 0:
                return remaining
            self.state = "half-open"
        if self.state == "half-open":
            if self._probing:
                return 1.0
            self._probing = True  # half-open: let exactly one probe through
        return None

    async def _sleep_or_change(self, timeout: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def record(self, ok: bool) -> None:
        """Report the outcome of a call that :meth:`wait` let through."""
        self._recent.append(ok)
        if self.state == "half-open":
            self._probing = False
            if ok:
                self._close()
            else:
                self._open()
            return
        if ok:
            self._consecutive = 0
            return
        self._consecutive += 1
        s = self.settings
        rate_tripped = (len(self._recent) == s.window and s.failure_rate < 1.0
                        and self._recent.count(False) / s.window >= s.failure_rate)
        if self._consecutive >= s.failures or rate_tripped:
            self._open()

    def cooldown_left(self) -> float:
        """Seconds until an open breaker lets a probe through (0 unless open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.settings.cooldown - time.monotonic())

    def force(self, state: str, cooldown_left: float | None = None) -> None:
        """Move to ``open`` (for ``cooldown_left`` s, default a whole cooldown) or ``closed``
        because another instance's breaker did (fleet scope). Not reported to ``on_change``."""
        if state == "open":
            left = self.settings.cooldown if cooldown_left is None else cooldown_left
            if self.state == "open" and self.cooldown_left() >= left:
                return
            self._open(notify=False)
            self._opened_at = time.monotonic() - self.settings.cooldown + max(0.0, left)
        elif state == "closed" and self.state != "closed":
            self._probing = False
            self._close(notify=False)

    def _open(self, notify: bool = True) -> None:
        self.state = "open"
        self._opened_at = time.monotonic()
        self._changed.set()
        if notify and self.on_change is not None:
            self.on_change("open")

    def _close(self, notify: bool = True) -> None:
        self.state = "closed"
        self._consecutive = 0
        self._recent.clear()
        self._changed.set()
        if notify and self.on_change is not None:
            self.on_change("closed")
