"""Inbound de-duplication by ``Idempotency-Key``: a repeated request within the window gets
the original answer and is not published again.

Kept per process (an LRU with a time window); concurrent duplicates wait for the first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class IdempotencyCache:
    def __init__(self, window: float = 86400.0, max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, asyncio.Future[object]]] = OrderedDict()

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``work()``'s result and whether it was a duplicate. A failed first attempt is
        forgotten, so the sender's retry is treated as new."""
        now = time.monotonic()
        self._expire(now)
        entry = self._entries.get(key)
        if entry is not None:
            result = await asyncio.shield(entry[1])
            return result, True  # type: ignore[return-value]
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now, fut)
        try:
            result = await work()
        except BaseException as exc:
            self._entries.pop(key, None)
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: duplicates that were waiting re-raise it
            raise
        fut.set_result(result)
        return result, False

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            stamp, fut = next(iter(entries.values()))
            if now - stamp < self.window and len(entries) <= self.max_entries:
                break
            if not fut.done():
                break
            entries.popitem(last=False)
