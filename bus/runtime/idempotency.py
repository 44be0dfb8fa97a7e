"""Inbound de-duplication by ``Idempotency-Key``: a repeated request within the window gets
the original answer and is not published again — for every inbound adapter, since the runtime
does it in :meth:`~esb.bus.runtime.ingress.SourceContext.accept`.

Each process keeps an LRU with a time window (concurrent duplicates wait for the first); on
RabbitMQ, :class:`~esb.bus.runtime.idempotency_log.IdempotencyLog` shares the keys between
instances.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from esb.adapters.spec import Accepted

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

    def remember(self, key: str, result: object) -> None:
        """Learn a key another instance accepted (its original result)."""
        if key in self._entries:
            return
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        fut.set_result(result)
        self._entries[key] = (time.monotonic(), fut)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            stamp, fut = next(iter(entries.values()))
            if now - stamp < self.window and len(entries) <= self.max_entries:
                break
            if not fut.done():
                break
            entries.popitem(last=False)


class SharedIdempotency:
    """The cache of this instance, fed by and feeding the other instances' (when shared)."""

    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        self.cache = IdempotencyCache(window, max_keys)
        self.log: Any = None  # an IdempotencyLog, on RabbitMQ

    async def run(self, key: str, work: Callable[[], Awaitable[Accepted]]
                  ) -> tuple[Accepted, bool]:
        result, duplicate = await self.cache.run(key, work)
        if not duplicate and self.log is not None:
            await self.log.publish(key, {"id": result.id,
                                         "destinations": list(result.destinations)})
        return result, duplicate

    def learn(self, key: str, record: dict[str, Any]) -> None:
        self.cache.remember(key, Accepted(record["id"], tuple(record.get("destinations", ()))))
