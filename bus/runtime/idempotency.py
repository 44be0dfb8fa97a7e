"""Inbound de-duplication by idempotency key (``Idempotency-Key``, a webhook's delivery id, a
polled item's key): a repeated request within the window gets the original answer and is not
published again — for every inbound adapter, since the runtime does it in
:meth:`~esb.bus.runtime.ingress.SourceContext.accept`.

Each process keeps an LRU with a time window (concurrent duplicates within one process wait for
the first). On RabbitMQ, :class:`~esb.bus.runtime.idempotency_log.IdempotencyLog` decides
between instances: a key is claimed in the shared log before anything is published, and the
record that it was taken is committed together with the envelope, so the same key sent to two
instances at once is published once (the other is answered with the original, or 409 while the
first is still in flight).

A repeat whose payload differs from the first one's (type, content type and data, by
:func:`fingerprint`) is still not published; :attr:`~esb.adapters.spec.Accepted.mismatch` tells
the adapter, and HTTP endpoints answer it with 422 (the IETF Idempotency-Key draft).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import orjson

from esb.adapters.spec import Accepted
from esb.bus.envelope import Envelope
from esb.bus.errors import IdempotencyInFlight

T = TypeVar("T")

#: Builds the record that the key was taken, from the accepted result: (queue, body), to be
#: committed in the same transaction as the envelope's copies.
Seal = Callable[[Accepted], tuple[str, bytes]]

#: How long a request whose key another instance holds waits for that one to finish (then 409).
IN_FLIGHT_WAIT = 5.0


def fingerprint(envelope: Envelope) -> str:
    """What must be equal for a repeat to be the *same* request: type, content type, data."""
    data = envelope.data
    if isinstance(data, bytes):
        raw = data
    elif isinstance(data, str):
        raw = data.encode()
    else:
        raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str)
    digest = hashlib.sha256()
    for part in (envelope.type or "", envelope.datacontenttype or ""):
        digest.update(part.encode())
        digest.update(b"\x00")
    digest.update(raw)
    return digest.hexdigest()[:32]


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
            # The error's traceback holds this frame: without this the frame, the future and
            # the error (and the message they reach) make a cycle for the cyclic collector.
            del fut
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
            fresh = now - stamp < self.window and len(entries) <= self.max_entries
            if fresh or not fut.done():  # (a first attempt still running is kept)
                break
            entries.popitem(last=False)


#: What the cache keeps per key: the original result, its payload's fingerprint, and whether
#: this instance learnt it (from the log) rather than publishing it.
_Entry = tuple[Accepted, str | None, bool]


class SharedIdempotency:
    """The cache of this instance, deciding with the other instances through the log (when
    there is one: on RabbitMQ)."""

    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        self.cache = IdempotencyCache(window, max_keys)
        self.log: Any = None  # an IdempotencyLog, on RabbitMQ

    async def run(self, key: str, fp: str, accept: Callable[[Seal | None], Awaitable[Accepted]]
                  ) -> Accepted:
        """``accept(seal)`` once per key across the fleet; a repeat gets the original result
        marked ``duplicate`` (and ``mismatch`` when its payload differs). Raises
        :class:`~esb.bus.errors.IdempotencyInFlight` while another instance holds the key."""
        entry, repeated = await self.cache.run(key, lambda: self._first(key, fp, accept))
        accepted, original, learnt = entry
        if repeated or learnt:
            return replace(accepted, duplicate=True,
                           mismatch=original is not None and original != fp)
        return accepted

    async def _first(self, key: str, fp: str,
                     accept: Callable[[Seal | None], Awaitable[Accepted]]) -> _Entry:
        log = self.log
        if log is None:
            return await accept(None), fp, False
        verdict = await log.claim(key, fp)
        if verdict.kind == "busy":
            record = await log.wait_done(key, IN_FLIGHT_WAIT)
            if record is None:
                raise IdempotencyInFlight(key)
            return _learnt(record)
        if verdict.kind == "done":
            return _learnt(verdict.record)

        def seal(accepted: Accepted) -> tuple[str, bytes]:
            return log.done_record(key, verdict.nonce, fp, accepted.id, accepted.destinations)

        try:
            accepted = await accept(seal)
        except BaseException:
            log.abandon(key, verdict.nonce)
            raise
        return accepted, fp, False

    def learn(self, key: str, record: dict[str, Any]) -> None:
        self.cache.remember(key, _learnt(record))


def _learnt(record: dict[str, Any]) -> _Entry:
    return (Accepted(record["id"], tuple(record.get("destinations", ()))), record.get("fp"),
            True)
