"""A message in over HTTP and out to a real HTTP destination, through a daemon subprocess, on
the embedded bus and on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.waiting import wait_until
from prometheus_client.parser import text_string_to_metric_families

ROUTES = {"orders.yaml": {"routes": [
    {"name": "orders-out", "from": ["shop"], "match": {"type": ["order.created"]},
     "to": ["out"]},
]}}


def flow_config(bus: dict[str, Any], sink_url: str, **delivery: Any) -> dict[str, Any]:
    return {
        "bus": bus,
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"out": {"adapter": "rest", "url": sink_url + "/orders/{data.n}",
                                 "cloudevents": "binary",  # the envelope's attributes too
                                 "delivery": {"concurrency": 32, "timeout": "5s",
                                              "backoff": {"initial": "1s", "max": "4s"},
                                              "max_attempts": 20, **delivery}}},
    }


async def post_many(url: str, n: int, *, concurrency: int = 64, start: int = 0
                    ) -> dict[int, httpx.Response | Exception]:
    """POST n orders concurrently; the result per order number (response or error).

    The client is aiohttp, its answers copied into ``httpx.Response`` objects: httpx's async
    pool spends about 5 ms of CPU a request at this concurrency (more than the daemon spends
    on the message), which made the sender the bottleneck of every test that posts many."""
    results: dict[int, httpx.Response | Exception] = {}
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as client:
        async def one(i: int) -> None:
            async with sem:
                body = orjson.dumps({"n": i, "customer": f"c{i}", "total": i * 10})
                target = f"{url}/in/shop/order.created"
                for attempt in range(3):  # a sender retries a lost answer (safe: same key)
                    try:
                        async with client.post(
                                target, data=body,
                                headers={"Content-Type": "application/json",
                                         "Idempotency-Key": f"order-{i}",
                                         "X-Correlation-Id": f"corr-{i}"}) as answer:
                            content = await answer.read()
                        results[i] = httpx.Response(
                            answer.status, headers=list(answer.raw_headers), content=content,
                            request=httpx.Request("POST", target))
                        break
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        results[i] = exc
                        await asyncio.sleep(0.05 * (attempt + 1))

        await asyncio.gather(*(one(i) for i in range(start, start + n)))
    return results


def accepted(results: dict[int, httpx.Response | Exception]) -> set[str]:
    return {f"order-{i}" for i, r in results.items()
            if isinstance(r, httpx.Response) and r.status_code == 202}


def check_exactly_once(sink: Any, n: int,
                       results: dict[int, httpx.Response | Exception]) -> None:
    """Each order arrived once, with its body, path, headers and envelope attributes (the
    CloudEvents binary headers) intact: the id is the one the 202 gave the sender."""
    counts = sink.keys()
    assert set(counts) == {f"order-{i}" for i in range(n)}
    assert all(c == 1 for c in counts.values()), {k: c for k, c in counts.items() if c > 1}
    for rec in sink.received:
        i = int(rec.key.split("-")[1])
        assert rec.path == f"/orders/{i}"
        assert orjson.loads(rec.body) == {"n": i, "customer": f"c{i}", "total": i * 10}
        assert rec.headers["content-type"] == "application/json"
        assert rec.headers["x-correlation-id"] == f"corr-{i}"
        answer = results[i]
        assert isinstance(answer, httpx.Response)
        assert rec.headers["ce-id"] == answer.json()["id"]
        assert (rec.headers["ce-type"], rec.headers["ce-source"]) == ("order.created", "shop")
        assert rec.headers["ce-specversion"] == "1.0" and "ce-time" in rec.headers


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
    check_exactly_once(sink, n, results)
    assert d.stop() == 0


def test_kill_minus_nine_loses_no_accepted_message(rabbit: Any, sink: Any,
                                                   daemon_factory: Any) -> None:
    """All 1,000 messages accepted and in flight (the destination holds its answers), then
    kill -9: after a restart every accepted message arrives."""
    gate = threading.Event()

    def held(rec: Any) -> tuple[int, dict[str, str]]:
        gate.wait(60)
        time.sleep(0.02)
        return 200, {}

    sink.status_for = held
    # The held calls must not time out while the senders post: timed-out calls would open
    # the breaker, and its 30 s cooldown — not the kill — would then set the test's pace.
    d = daemon_factory(flow_config(rabbit.bus("out"), sink.url, timeout="60s"),
                       ROUTES).start()
    results = asyncio.run(post_many(d.url, 1000))
    ok = accepted(results)
    assert ok == {f"order-{i}" for i in range(1000)}, "every message is accepted first"
    gate.set()
    assert sink.wait_for(100, timeout=60), d.log()
    d.kill()
    delivered_before = len(sink.unique())
    assert delivered_before < 1000, "the kill should land while messages are in flight"
    d.start()
    sink.wait_for(len(ok), timeout=90)
    lost = ok - sink.unique()
    dupes = sum(c - 1 for c in sink.keys().values())
    print(f"\naccepted {len(ok)}, delivered before kill {delivered_before}, "
          f"delivered after restart {len(sink.unique())}, lost {len(lost)}, "
          f"duplicates {dupes}")
    assert not lost, f"{len(lost)} accepted messages were lost\n{d.log()}"


def counted(d: DaemonProcess, name: str) -> float:
    """The daemon's ``/metrics`` counter ``name``, summed over its labels."""
    text = d.http.get(f"{d.url}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == name)


def test_destination_down_then_everything_arrives(bus: dict[str, Any], sink: Any,
                                                  daemon_factory: Any) -> None:
    """A real outage: the destination's listener is closed (connections refused) while
    deliveries fail, are scheduled for retry, and the open breaker's probes are refused too;
    once it listens again every message arrives, and none was dead-lettered."""
    # A short backoff and cooldown, few calls at once and a breaker quick to open: the
    # outage is measured below in the daemon's own retries and probes, and these settings
    # only decide how long it takes to see them.
    concurrency, failures = 4, 2
    d = daemon_factory(flow_config(bus, sink.url, concurrency=concurrency,
                                   backoff={"initial": "250ms", "max": "1s"},
                                   breaker={"failures": failures, "cooldown": "100ms"}),
                       ROUTES).start()
    sink.go_away()
    results = asyncio.run(post_many(d.url, 100))
    assert len(accepted(results)) == 100
    # Down until the daemon has met the outage, not for a fixed time. Before the breaker
    # opens at most concurrency + failures - 1 calls go out (`concurrency` at once, then one
    # per slot a refused call frees, until the `failures`-th refusal opens it): every call
    # beyond that is a probe let through after a cooldown. Two refused probes: the calls the
    # breaker let through after its cooldowns met the outage too, and it opened again.
    wait_until(lambda: counted(d, "esb_failed_total") >= concurrency + failures + 1
               and counted(d, "esb_retried_total") > 0,
               "refused deliveries, scheduled retries and refused breaker probes",
               timeout=60, daemon=d)
    assert sink.unique() == set()
    sink.come_back()
    assert sink.wait_for(100, timeout=60), f"{len(sink.unique())}/100 arrived\n{d.log()}"
    st = d.admin("GET", "/admin/status").json()
    assert st["queues"]["dlq"] == 0


def test_a_message_arrives_transformed_at_a_rest_destination(
        bus: dict[str, Any], sink: Any, daemon_factory: Any) -> None:
    """The foundation's promise end to end: JSON in over HTTP, JSON → XML → the ERP's own
    document by the shipped stylesheet, out over HTTP to a real server — on both buses."""
    from pathlib import Path

    from lxml import etree

    stylesheet = "config/xslt/canonical-to-erp.xsl"  # inside the daemon's folder, as it must
    shipped = Path(__file__).resolve().parents[2] / stylesheet
    routes = {"orders.yaml": {"routes": [{
        "name": "orders-to-erp", "from": ["shop"], "match": {"type": ["order.created"]},
        "to": [{"destination": "out", "transform": [{"json-to-xml": {"root": "order"}},
                                                    {"xslt": stylesheet}]}]}]}}
    cfg = flow_config(bus, sink.url)
    cfg["destinations"]["out"]["url"] = sink.url + "/erp/{type}"  # the data is XML by then
    d = daemon_factory(cfg, routes, files={stylesheet: shipped.read_text()}).start()
    body = {"n": 7, "customer": "ACME", "country": "DE", "total": 1200,
            "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}]}
    r = httpx.post(f"{d.url}/in/shop/order.created", json=body,
                   headers={"Idempotency-Key": "order-7"})
    assert r.status_code == 202, r.text
    assert sink.wait_for(1, timeout=20), d.log()
    rec = sink.received[0]
    assert rec.path == "/erp/order.created"
    assert rec.headers["content-type"].startswith("application/xml")
    assert rec.headers["ce-id"] == r.json()["id"] and rec.key == "order-7"
    order = etree.fromstring(rec.body)
    assert order.tag == "SalesOrder" and order.get("reference") == r.json()["id"]
    assert order.findtext("Customer") == "ACME" and order.findtext("Amount") == "1200"
    assert [(x.get("sku"), x.get("qty")) for x in order.iter("Line")] == [("A-1", "2"),
                                                                       ("B-2", "1")]
