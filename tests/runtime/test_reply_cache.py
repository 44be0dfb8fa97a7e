"""The response cache on its own, on a clock the test moves: TTL, the two bounds (entries and
bytes), answers too large to keep, what makes two requests share an answer, processes sharing
one database file, and a store that is broken or busy (a miss, never an error)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from structlog.testing import capture_logs

from esb.bus.envelope import Envelope
from esb.bus.routing.model import CacheSpec
from esb.bus.runtime.reply_cache import ReplyCache, RouteCache, shared_file


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
    caches = ReplyCache(clock=Clock())
    first = caches.route("lookup", spec())
    first.put(b"k", answer(1))
    assert caches.route("lookup", spec()) is first
    again = caches.route("lookup", spec(ttl="1m"))
    assert again is not first and again.get(b"k") is None


def test_caches_on_one_file_share_their_answers_and_bounds(tmp_path: Path) -> None:
    path = shared_file(tmp_path)
    clock = Clock()
    one, two = ReplyCache(path, clock), ReplyCache(path, clock)
    s = spec(max_entries=2)
    one.route("lookup", s).put(b"a", answer(1))
    got = two.route("lookup", s).get(b"a")
    assert got is not None and got.data == 1 and got.type == "customer.get.reply"
    two.route("lookup", s).put(b"b", answer(2))
    two.route("lookup", s).put(b"b", answer(2))  # kept again: replaced, not counted twice
    assert len(one.route("lookup", s)) == 2
    assert one.route("lookup", s).get(b"a") is not None  # a is now the most recently used
    one.route("lookup", s).put(b"c", answer(3))  # b, least recently used by either, goes
    assert two.route("lookup", s).get(b"b") is None
    assert len(two.route("lookup", s)) == 2
    assert two.route("other", s).get(b"a") is None  # routes do not share
    clock.now += 31
    assert one.route("lookup", s).get(b"a") is None  # expired for every process
    one.route("other", s).put(b"z", answer(4))  # a store purges every expired answer
    assert len(two.route("lookup", s)) == 0


def test_a_broken_store_is_a_miss_logged_once(tmp_path: Path) -> None:
    (tmp_path / "reply-cache").write_text("a file where the folder should be")
    cache = ReplyCache(shared_file(tmp_path)).route("lookup", spec())
    with capture_logs() as logs:
        assert not cache.put(b"k", answer(1))
        assert cache.get(b"k") is None
        assert cache.get(b"k") is None
    assert [e["event"] for e in logs] == [
        "the response cache is not working: answering without it"]


def test_a_store_another_process_holds_locked_is_a_quick_miss(tmp_path: Path) -> None:
    path = shared_file(tmp_path)
    cache = ReplyCache(path).route("lookup", spec())
    assert cache.put(b"k", answer(1))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another worker in the middle of a write
    try:
        started = time.monotonic()
        assert not cache.put(b"j", answer(2))  # not kept, not waited for
        assert time.monotonic() - started < 0.5
        got = cache.get(b"k")  # a read does not wait for the writer
        assert got is not None and got.data == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cache.put(b"j", answer(2))
