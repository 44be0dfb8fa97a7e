"""One daemon's ``/metrics`` after a few messages, one of which failed once (transient) before
it was delivered: every counter and histogram says so, with its labels."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.sink import Received
from prometheus_client.parser import text_string_to_metric_families

ROUTES = {"r.yaml": {"routes": [{"name": "all", "match": {}, "to": ["out"]}]}}
KEYS = ["m-1", "m-2", "m-flaky", "m-3"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(d: DaemonProcess) -> Samples:
    text = httpx.get(f"{d.url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def fails_once(key: str) -> Any:
    """A ``status_for`` answering 503 to the first request with Idempotency-Key ``key``."""
    seen: set[str] = set()
    lock = threading.Lock()

    def status(rec: Received) -> tuple[int, dict[str, str]]:
        with lock:
            first = rec.key == key and key not in seen
            seen.add(rec.key or "")
        return (503, {"Retry-After": "0"}) if first else (200, {})

    return status


@pytest.mark.parametrize("bus", ["embedded", "rabbitmq"])
def test_metrics_count_received_routed_delivered_failed_and_latency(
        bus: str, rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    sink.status_for = fails_once("m-flaky")
    bus_cfg = rabbit.bus("out") if bus == "rabbitmq" else {"url": "embedded"}
    d = daemon_factory({
        "bus": bus_cfg,
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"out": {"adapter": "rest", "url": sink.url + "/in", "delivery": {
            "max_attempts": 3, "backoff": {"initial": "100ms", "max": "100ms"}}}},
    }, ROUTES).start()
    for key in KEYS:
        r = httpx.post(f"{d.url}/in/shop", content=b'{"n": 1}', timeout=10,
                       headers={"Content-Type": "application/json", "Idempotency-Key": key})
        assert r.status_code == 202, r.text
    assert sink.wait_for(len(KEYS), timeout=30), d.log()
    out = (("destination", "out"),)
    deadline = time.monotonic() + 10  # the counters move just after the sink answered
    m = scrape(d)
    while m.get(("esb_delivered_total", out)) != len(KEYS) and time.monotonic() < deadline:
        time.sleep(0.1)
        m = scrape(d)
    assert m[("esb_received_total", (("source", "shop"),))] == 4
    assert m[("esb_routed_total", (("destination", "out"), ("route", "all")))] == 4
    assert m[("esb_delivered_total", out)] == 4
    assert m[("esb_failed_total", (("destination", "out"), ("kind", "transient")))] == 1
    assert m.get(("esb_failed_total", (("destination", "out"), ("kind", "permanent"))),
                 0) == 0
    assert m[("esb_retried_total", out)] == 1
    # every call is timed (5: the failed one too); end to end counts each envelope once
    assert m[("esb_delivery_seconds_count", out)] == 5
    assert m[("esb_delivery_seconds_bucket", (*out, ("le", "+Inf")))] == 5
    assert m[("esb_delivery_seconds_sum", out)] > 0
    assert m[("esb_end_to_end_seconds_count", out)] == 4
    assert m[("esb_in_flight", out)] == 0
    assert m[("esb_bus_connected", ())] == 1
    assert m[("esb_route_version", ())] == 1
    assert [status for _, status in sink.requests].count(503) == 1
