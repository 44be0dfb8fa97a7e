"""A message in over HTTP and out to a real HTTP destination, through a daemon subprocess, on
the embedded bus and on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.sink import answer_after

ROUTES = {"orders.yaml": {"routes": [
    {"name": "orders-out", "from": ["shop"], "match": {"type": ["order.created"]},
     "to": ["out"]},
]}}


def flow_config(bus: dict[str, Any], sink_url: str, **delivery: Any) -> dict[str, Any]:
    return {
        "bus": bus,
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"out": {"adapter": "rest", "url": sink_url + "/orders/{data.n}",
                                 "delivery": {"concurrency": 32, "timeout": "5s",
                                              "backoff": {"initial": "1s", "max": "4s"},
                                              "max_attempts": 20, **delivery}}},
    }


async def post_many(url: str, n: int, *, concurrency: int = 64, start: int = 0
                    ) -> dict[int, httpx.Response | Exception]:
    """POST n orders concurrently; the result per order number (response or error)."""
    results: dict[int, httpx.Response | Exception] = {}
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def one(i: int) -> None:
            async with sem:
                body = orjson.dumps({"n": i, "customer": f"c{i}", "total": i * 10})
                for attempt in range(3):  # a sender retries a lost answer (safe: same key)
                    try:
                        results[i] = await client.post(
                            f"{url}/in/shop/order.created", content=body,
                            headers={"Content-Type": "application/json",
                                     "Idempotency-Key": f"order-{i}",
                                     "X-Correlation-Id": f"corr-{i}"})
                        break
                    except httpx.HTTPError as exc:
                        results[i] = exc
                        await asyncio.sleep(0.05 * (attempt + 1))

        await asyncio.gather(*(one(i) for i in range(start, start + n)))
    return results


def accepted(results: dict[int, httpx.Response | Exception]) -> set[str]:
    return {f"order-{i}" for i, r in results.items()
            if isinstance(r, httpx.Response) and r.status_code == 202}


def check_exactly_once(sink: Any, n: int) -> None:
    counts = sink.keys()
    assert set(counts) == {f"order-{i}" for i in range(n)}
    assert all(c == 1 for c in counts.values()), {k: c for k, c in counts.items() if c > 1}
    for rec in sink.received:
        i = int(rec.key.split("-")[1])
        assert rec.path == f"/orders/{i}"
        assert orjson.loads(rec.body) == {"n": i, "customer": f"c{i}", "total": i * 10}
        assert rec.headers["content-type"] == "application/json"
        assert rec.headers["x-correlation-id"] == f"corr-{i}"


@pytest.fixture(params=["rabbitmq", "embedded"])
def bus(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The bus config for both kinds. Requested before ``daemon_factory`` so the daemons stop
    before the broker clean-up runs (a running daemon would re-declare what it deletes)."""
    if request.param == "rabbitmq":
        return request.getfixturevalue("rabbit").bus("out")
    return {"url": "embedded"}


def test_thousand_concurrent_messages_arrive_exactly_once(bus: dict[str, Any], sink: Any,
                                                          daemon_factory: Any) -> None:
    kind = "embedded" if bus["url"] == "embedded" else "rabbitmq"
    d: DaemonProcess = daemon_factory(flow_config(bus, sink.url), ROUTES).start()
    n = 1000
    t0 = time.perf_counter()
    results = asyncio.run(post_many(d.url, n))
    assert accepted(results) == {f"order-{i}" for i in range(n)}
    assert sink.wait_for(n, timeout=60), f"{len(sink.unique())}/{n} arrived\n{d.log()}"
    elapsed = time.perf_counter() - t0
    print(f"\n{kind}: {n} messages accepted and delivered in {elapsed:.2f}s "
          f"({n / elapsed:.0f} msg/s end to end)")
    check_exactly_once(sink, n)
    assert d.stop() == 0


def test_kill_minus_nine_loses_no_accepted_message(rabbit: Any, sink: Any,
                                                   daemon_factory: Any) -> None:
    sink.status_for = answer_after(0.005)  # keep deliveries in flight when the daemon dies
    d = daemon_factory(flow_config(rabbit.bus("out"), sink.url), ROUTES).start()

    async def load_and_kill() -> dict[int, httpx.Response | Exception]:
        task = asyncio.create_task(post_many(d.url, 1000, concurrency=32))
        while len(sink.unique()) < 150:
            await asyncio.sleep(0.01)
        d.kill()
        return await task

    results = asyncio.run(load_and_kill())
    ok = accepted(results)
    assert 150 <= len(ok) < 1000, "the kill should land while messages are in flight"
    delivered_before = len(sink.unique())
    d.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ok <= sink.unique():
        time.sleep(0.1)
    lost = ok - sink.unique()
    dupes = sum(c - 1 for c in sink.keys().values())
    print(f"\naccepted {len(ok)}, delivered before kill {delivered_before}, "
          f"delivered after restart {len(sink.unique())}, lost {len(lost)}, "
          f"duplicates {dupes}")
    assert not lost, f"{len(lost)} accepted messages were lost\n{d.log()}"


def test_destination_down_for_ten_seconds_then_everything_arrives(
        bus: dict[str, Any], sink: Any, daemon_factory: Any) -> None:
    d = daemon_factory(flow_config(bus, sink.url), ROUTES).start()
    sink.down = True
    results = asyncio.run(post_many(d.url, 100))
    assert len(accepted(results)) == 100
    time.sleep(10)
    assert sink.unique() == set()
    sink.down = False
    assert sink.wait_for(100, timeout=60), f"{len(sink.unique())}/100 arrived\n{d.log()}"
    st = d.admin("GET", "/admin/status").json()
    assert st["queues"]["dlq"] == 0
