"""Replay rejection: remembers delivery ids for a window.

The inbound side talks to a :class:`ReplayStore`; the in-memory one below is per process, a
bus-backed one can replace it without touching the adapter.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class ReplayStore(Protocol):
    """Claims delivery ids; a claimed id is refused until it expires or is released."""

    async def claim(self, key: str, ttl: float) -> bool:
        """Claim ``key`` for ``ttl`` seconds; ``False`` when it is already claimed."""
        ...

    async def release(self, key: str) -> None:
        """Forget ``key`` (the delivery failed, so the provider's retry must get through)."""
        ...


class MemoryReplayStore:
    """Per-process store: ids in insertion order, expired ones pruned as new ones arrive."""

    def __init__(self, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def claim(self, key: str, ttl: float) -> bool:
        now = self._clock()
        self._prune(now)
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + ttl
        self._seen.move_to_end(key)
        return True

    async def release(self, key: str) -> None:
        self._seen.pop(key, None)

    def _prune(self, now: float) -> None:
        # entries share one ttl per adapter, so insertion order is expiry order
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) < self._max:
                break
            del self._seen[key]
