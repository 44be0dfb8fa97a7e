"""The response cache on its own, on a clock the test moves: TTL, the two bounds (entries and
bytes), answers too large to keep, and what makes two requests share an answer."""

from __future__ import annotations

from esb.bus.envelope import Envelope
from esb.bus.routing.model import CacheSpec
from esb.bus.runtime.reply_cache import ReplyCache, RouteCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(data: object) -> Envelope:
    return Envelope(source="crm", type="customer.get.reply", data=data,
                    datacontenttype="application/json")


def spec(**kw: object) -> CacheSpec:
    return CacheSpec.model_validate({"ttl": "30s", "key": ["data.id"], **kw})


def test_an_answer_is_served_for_its_ttl_and_not_after() -> None:
    clock = Clock()
    cache = RouteCache(spec(), clock)
    assert cache.put(b"k", answer({"id": 1}))
    clock.now += 29.9
    got = cache.get(b"k")
    assert got is not None and got.data == {"id": 1}
    clock.now += 0.2
    assert cache.get(b"k") is None
    assert len(cache) == 0 and cache.bytes == 0


def test_the_least_recently_used_answer_goes_first_past_max_entries() -> None:
    cache = RouteCache(spec(max_entries=2), Clock())
    cache.put(b"a", answer(1))
    cache.put(b"b", answer(2))
    assert cache.get(b"a") is not None  # a is now the most recently used
    cache.put(b"c", answer(3))
    assert cache.get(b"b") is None
    assert cache.get(b"a") is not None and cache.get(b"c") is not None


def test_max_bytes_bounds_the_answers_kept_and_a_large_answer_is_not_kept() -> None:
    cache = RouteCache(spec(max_bytes="4KiB"), Clock())
    big = "x" * 900
    for i in range(10):
        assert cache.put(str(i).encode(), answer(big))
    assert cache.bytes <= 4096
    assert len(cache) == 4  # each ~903 bytes: the six oldest went
    assert cache.get(b"9") is not None and cache.get(b"0") is None
    assert not cache.put(b"huge", answer("y" * 1100))  # over a quarter of max_bytes
    assert cache.get(b"huge") is None


def test_requests_share_an_answer_by_version_type_and_key_fields() -> None:
    s = spec(key=["data.id", "subject"])

    def key(version: int, type_: str = "customer.get", **data: object) -> bytes:
        env = Envelope(source="api", type=type_, data=data, subject="s",
                       datacontenttype="application/json")
        return ReplyCache.key(s, env, version)

    assert key(3, id=42, other="x") == key(3, id=42, other="y")  # other fields do not count
    assert key(3, id=42) != key(3, id=43)
    assert key(3, id=42) != key(4, id=42)  # a deploy starts afresh
    assert key(3, id=42) != key(3, "customer.delete", id=42)
    assert key(3) == key(3, id=None)  # a missing field reads as null


def test_a_changed_cache_spec_starts_that_route_afresh() -> None:
    caches = ReplyCache(Clock())
    first = caches.route("lookup", spec())
    first.put(b"k", answer(1))
    assert caches.route("lookup", spec()) is first
    again = caches.route("lookup", spec(ttl="1m"))
    assert again is not first and again.get(b"k") is None
