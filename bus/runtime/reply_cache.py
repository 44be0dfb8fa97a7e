"""Response caching for request/reply routes and enrichers (``cache:``).

A cached answer is the one the caller got — after the reply leg (or the enricher's ``reply``
steps) — stored only when it was a success, and served for ``ttl`` seconds to every request of
the same route, route-set version and envelope type whose ``key`` fields have the same values.
A hit answers without publishing anything: the destination is not asked, so an answer may be up
to ``ttl`` old (and a deploy starts afresh: the version is part of the key).

Each route's cache is bounded twice, by ``max_entries`` and by ``max_bytes`` (the answers'
payload sizes); the least recently used entries go first, and an answer larger than a quarter
of ``max_bytes`` is not cached at all. The caches live in one process: with ``esb run
--workers N`` each worker keeps its own, so the first request a worker sees is a miss even when
another worker has the answer (see docs/routing.md, "Response caching").
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from esb.bus.envelope import Envelope
from esb.bus.payload import MISSING, field
from esb.bus.routing.model import CacheSpec

#: An answer larger than this share of ``max_bytes`` is not cached (it would evict the rest).
LARGEST_SHARE = 4


@dataclass(frozen=True)
class _Entry:
    answer: Envelope
    size: int
    expires: float


class RouteCache:
    """One route's answers: a TTL'd LRU bounded by entries and bytes."""

    def __init__(self, spec: CacheSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Envelope | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def put(self, key: bytes, answer: Envelope) -> bool:
        """Keep ``answer`` (False when it is too large to)."""
        size = len(answer.data_bytes()) + len(key)
        if size * LARGEST_SHARE > self.spec.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(answer, size, self.clock() + self.spec.ttl)
        self.bytes += size
        while len(self._entries) > self.spec.max_entries or self.bytes > self.spec.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size


class ReplyCache:
    """Every route's cache in this process, by route name (a new spec starts it afresh)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._routes: dict[str, RouteCache] = {}

    def route(self, name: str, spec: CacheSpec) -> RouteCache:
        cache = self._routes.get(name)
        if cache is None or cache.spec != spec:
            cache = self._routes[name] = RouteCache(spec, self.clock)
        return cache

    @staticmethod
    def key(spec: CacheSpec, asked: Envelope, version: int | None) -> bytes:
        """The cache key of a request made under route-set ``version``: the version, the
        type and ``key`` fields of ``asked``."""
        values = [None if (v := field(asked, path)) is MISSING else v for path in spec.key]
        return orjson.dumps([version, asked.type, values],
                            option=orjson.OPT_SORT_KEYS, default=str)
