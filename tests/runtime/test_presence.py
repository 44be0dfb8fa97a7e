"""Presence on the real RabbitMQ: two instances see each other within a heartbeat, one that
stops cleanly disappears at once, a silent one after the expiry; rates come from counter deltas.
With the embedded bus an instance knows only itself."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pika
import pytest

from esb.bus.runtime.presence import Presence

pytestmark = pytest.mark.rabbitmq

Factory = Callable[..., Presence]


class Counters:
    def __init__(self, route_version: int = 1) -> None:
        self.route_version = route_version
        self.delivered = 0

    def __call__(self) -> dict[str, Any]:
        return {"route_version": self.route_version, "bus_connected": True,
                "destinations": {"erp": {"delivered": self.delivered, "failed": 0,
                                         "dead_lettered": 0, "in_flight": 1,
                                         "breaker": "closed"}}}


@pytest.fixture
async def presences(rabbit_url: str, prefix: str) -> AsyncIterator[Factory]:
    made: list[Presence] = []

    def make(instance: str, snapshot: Callable[[], dict[str, Any]] | None = None,
             **kw: Any) -> Presence:
        p = Presence(rabbit_url, prefix, instance, snapshot or Counters(), timeout=5, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        await p.close()


async def _until(check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def _names(p: Presence) -> list[str]:
    return [i["instance"] for i in p.instances()]


async def test_two_instances_see_each_other_and_a_closed_one_disappears(
        presences: Factory) -> None:
    a = presences("inst-a", Counters(route_version=3))
    b = presences("inst-b", Counters(route_version=4))
    await a.start()
    await b.start()
    await _until(lambda: _names(a) == ["inst-a", "inst-b"] and
                 _names(b) == ["inst-b", "inst-a"], 6.0)
    seen_by_a = a.instances()
    assert seen_by_a[0]["self"] and not seen_by_a[1]["self"]
    peer = seen_by_a[1]
    assert peer["route_version"] == 4 and peer["bus_connected"] is True
    assert peer["pid"] > 0 and peer["host"] and peer["started_at"]
    assert peer["destinations"]["erp"]["breaker"] == "closed"
    assert peer["destinations"]["erp"]["delivered_per_s"] is None  # one heartbeat: no rate yet
    await b.close()
    await _until(lambda: _names(a) == ["inst-a"], 2.0)  # goodbye: no need to wait the expiry


async def test_a_silent_instance_expires_and_rates_come_from_deltas(
        rabbit_url: str, prefix: str, presences: Factory) -> None:
    a = presences("inst-a", interval=0.2, expiry=1.0)
    await a.start()
    sent = time.time()

    def ghost(delivered: int, at: float) -> None:  # a peer that then dies without goodbye
        conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
        try:
            conn.channel().basic_publish(f"{prefix}.presence", "", orjson.dumps({
                "v": 1, "kind": "heartbeat", "instance": "ghost", "host": "h", "pid": 1,
                "started_at": "2024-01-01T00:00:00+00:00", "sent_at": at,
                "destinations": {"erp": {"delivered": delivered, "failed": 2,
                                         "dead_lettered": 0}}}))
        finally:
            conn.close()

    ghost(100, sent)
    await _until(lambda: "ghost" in _names(a), 2.0)
    ghost(600, sent + 5.0)
    await _until(lambda: a.instances()[-1]["destinations"]["erp"]["delivered_per_s"] is not None,
                 2.0)
    erp = a.instances()[-1]["destinations"]["erp"]
    assert erp["delivered_per_s"] == 100.0 and erp["failed_per_s"] == 0.0
    assert erp["delivered"] == 600
    waited = await _until(lambda: _names(a) == ["inst-a"], 3.0)
    assert waited >= 0.5


async def test_embedded_knows_only_itself_with_rates() -> None:
    counters = Counters()
    p = Presence(None, "esb", "solo", counters, interval=0.1)
    await p.start()
    try:
        (me,) = p.instances()
        assert me["instance"] == "solo" and me["self"] and me["route_version"] == 1
        # its own beat is taken as the list is made: seen now, never "-0.0s" ago
        seen = [p.instances()[0]["last_seen_s"] for _ in range(200)]
        assert all(math.copysign(1.0, s) > 0 and s < 1 for s in seen), seen
        for _ in range(8):  # 10 deliveries every 50 ms: ~200/s
            counters.delivered += 10
            await asyncio.sleep(0.05)
        rate = p.instances()[0]["destinations"]["erp"]["delivered_per_s"]
        # (~200/s; a loop slowed by a busy machine sleeps longer, so the rate can be lower)
        assert rate is not None and 20 < rate < 400, rate
    finally:
        await p.close()
    assert [i["instance"] for i in p.instances()] == ["solo"]


async def test_a_failing_snapshot_does_not_stop_heartbeats() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    p = Presence(None, "esb", "solo", broken)
    (me,) = p.instances()
    assert me["snapshot_error"] == "RuntimeError: boom" and me["pid"] > 0
