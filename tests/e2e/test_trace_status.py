"""esb trace and esb status across instances on the real broker."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from esbtest.cli import esb
from esbtest.daemon import start_fleet
from esbtest.waiting import settled, wait_until
from test_delivery_faults import config

#: One route with a step of its own and a step for its one destination.
TRANSFORMING = {"r.yaml": {"routes": [{
    "name": "orders", "match": {}, "transform": [{"jmespath": "{order: n}"}],
    "to": [{"destination": "out", "transform": [{"json-to-xml": {"root": "o"}}]}]}]}}


def wait_for_trace(d: Any, eid: str, last: str, *also: str) -> list[dict[str, Any]]:
    """The trace of ``eid`` as ``esb trace`` shows it from ``d``, once it holds a ``last`` step
    and every step of ``also`` (waited for on the admin API, 10 s at most: each instance
    flushes its own events every 200 ms, so one instance's steps may be seen before the
    steps another took earlier)."""
    def traced() -> bool:
        r = d.admin("GET", f"/admin/trace/{eid}")
        return r.status_code == 200 and {last, *also} <= {e["step"] for e in r.json()["events"]}

    wait_until(traced, f"a {last!r} step in the trace", timeout=10, daemon=d)
    out = esb(d, "trace", eid, "--json")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["events"])


@dataclass
class Fleet:
    """Two instances on one prefix, and their configuration (for a third)."""

    config: dict[str, Any]
    a: Any
    b: Any


# Both tests use the same two instances: each looks at its own key's deliveries.
@pytest.fixture(scope="module")
def fleet(module_rabbit: Any, module_sink: Any, module_daemon_factory: Any) -> Fleet:
    # a retry comes after the shortest backoff (the bus's smallest retry tier)
    cfg = config(module_rabbit.bus("out"), {"out": module_sink.url},
                 out={"backoff": {"initial": "250ms", "max": "1s"}})
    a, b = start_fleet([module_daemon_factory(cfg, TRANSFORMING, name=n) for n in ("a", "b")])
    return Fleet(cfg, a, b)


def received(sink: Any, key: str) -> list[Any]:
    with sink.lock:
        return [rec for rec in sink.received if rec.key == key]


def test_trace_shows_every_hop_from_any_instance(fleet: Fleet, module_sink: Any) -> None:
    sink, a, b = module_sink, fleet.a, fleet.b
    calls: dict[str, int] = {}

    def once_503(rec: Any) -> tuple[int, dict[str, str]]:
        calls[rec.key] = calls.get(rec.key, 0) + 1
        return (503, {}) if calls[rec.key] == 1 else (200, {})

    sink.status_for = once_503
    try:
        r = httpx.post(f"{a.url}/in/shop/order", json={"n": 1},
                       headers={"Idempotency-Key": "t-1"})
        assert r.status_code == 202
        eid = r.json()["id"]
        wait_until(lambda: received(sink, "t-1"), "the delivery", timeout=30)
    finally:
        sink.status_for = None
    events = wait_for_trace(b, eid, "delivered", "accepted", "routed", "attempt",
                            "retry-scheduled")  # asked of the other instance
    steps = [e["step"] for e in events]
    assert steps[:4] == ["accepted", "transformed", "transformed", "routed"], steps
    assert "attempt" in steps and "retry-scheduled" in steps and steps[-1] == "delivered"
    route_step, dest_step = events[1]["detail"], events[2]["detail"]
    assert route_step["route"] == "orders" and route_step["transform"] == "jmespath"
    assert "destination" not in route_step  # the route's own step runs once for all
    assert dest_step["route"] == "orders" and dest_step["destination"] == "out"
    assert dest_step["transform"] == "json-to-xml"
    assert all(isinstance(d["duration_ms"], float) and d["duration_ms"] >= 0
               for d in (route_step, dest_step))
    failed = events[steps.index("attempt")]["detail"]
    assert failed["status"] == 503 and failed["outcome"] == "transient"
    delivered = events[-1]["detail"]
    assert delivered["destination"] == "out" and delivered["status"] == 200
    assert delivered["attempt"] == 2 and delivered["latency_ms"] > 0
    assert b"<o><order>1</order></o>" in received(sink, "t-1")[0].body  # both steps ran

    table = esb(b, "trace", eid).stdout
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("TIME (UTC)"))
    column = header.index("STEP")
    rows = [line for line in lines if line[column:].startswith("transformed ")]
    assert len(rows) == 2, table
    assert "transform=jmespath" in rows[0] and "took=" in rows[0]
    assert "destination=out transform=json-to-xml" in rows[1]
    done = next(line for line in lines if line[column:].startswith("delivered "))
    assert "status=200 latency=" in done and "attempt=2" in done

    deadline = time.monotonic() + 15
    instances: list[Any] = []
    while time.monotonic() < deadline:
        instances = json.loads(esb(a, "status", "--json").stdout)["instances"]
        if len(instances) == 2:
            break
        time.sleep(0.5)
    assert len(instances) == 2
    text = esb(a, "status").stdout
    assert "INSTANCE" in text and "BREAKER" in text
    missing = esb(a, "trace", "no-such-id")
    assert missing.returncode != 0 and "no-such-id" in missing.stderr


def test_idempotency_key_is_shared_between_instances(fleet: Fleet, module_sink: Any,
                                                     daemon_factory: Any) -> None:
    sink, a, b = module_sink, fleet.a, fleet.b
    headers = {"Idempotency-Key": "shared-1"}
    first = httpx.post(f"{a.url}/in/shop/order", json={"n": 1}, headers=headers)
    assert first.status_code == 202
    # at once: the key was taken in the shared log before a answered, and b reads the log
    again = httpx.post(f"{b.url}/in/shop/order", json={"n": 1}, headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    # an instance started later learns the keys of the window from the stream
    c = daemon_factory(fleet.config, TRANSFORMING, name="c").start()
    late = httpx.post(f"{c.url}/in/shop/order", json={"n": 1}, headers=headers)
    assert late.json()["id"] == first.json()["id"]
    wait_until(lambda: received(sink, "shared-1"), "the delivery", timeout=20)
    wait_until(lambda: all(settled(d) for d in (a, b, c)), "nothing left to deliver")
    assert len(received(sink, "shared-1")) == 1
