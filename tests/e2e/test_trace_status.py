"""esb trace and esb status across instances on the real broker."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from test_delivery_faults import cli, config, routes


def test_trace_shows_every_hop_from_any_instance(rabbit: Any, sink: Any,
                                                 daemon_factory: Any) -> None:
    calls: dict[str, int] = {}

    def once_503(rec: Any) -> tuple[int, dict[str, str]]:
        calls[rec.key] = calls.get(rec.key, 0) + 1
        return (503, {}) if calls[rec.key] == 1 else (200, {})

    sink.status_for = once_503
    cfg = config(rabbit.bus("out"), {"out": sink.url})
    a = daemon_factory(cfg, routes("out"), name="a").start()
    b = daemon_factory(cfg, routes("out"), name="b").start()
    r = httpx.post(f"{a.url}/in/shop/order", json={"n": 1},
                   headers={"Idempotency-Key": "t-1"})
    assert r.status_code == 202
    eid = r.json()["id"]
    assert sink.wait_for(1, timeout=30)
    steps: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = cli(b, "trace", eid, "--json")  # asked of the other instance
        if out.returncode == 0:
            steps = [e["step"] for e in json.loads(out.stdout)["events"]]
            if "delivered" in steps:
                break
        time.sleep(0.5)
    assert steps[:2] == ["accepted", "routed"], steps
    assert "attempt" in steps and "retry-scheduled" in steps and steps[-1] == "delivered"
    table = cli(b, "trace", eid)
    assert "STEP" in table.stdout and "delivered" in table.stdout

    deadline = time.monotonic() + 15
    instances: list[Any] = []
    while time.monotonic() < deadline:
        instances = json.loads(cli(a, "status", "--json").stdout)["instances"]
        if len(instances) == 2:
            break
        time.sleep(0.5)
    assert len(instances) == 2
    text = cli(a, "status").stdout
    assert "INSTANCE" in text and "BREAKER" in text
    missing = cli(a, "trace", "no-such-id")
    assert missing.returncode != 0 and "no-such-id" in missing.stderr


def test_idempotency_key_is_shared_between_instances(rabbit: Any, sink: Any,
                                                     daemon_factory: Any) -> None:
    cfg = config(rabbit.bus("out"), {"out": sink.url})
    a = daemon_factory(cfg, routes("out"), name="a").start()
    b = daemon_factory(cfg, routes("out"), name="b").start()
    headers = {"Idempotency-Key": "shared-1"}
    first = httpx.post(f"{a.url}/in/shop/order", json={"n": 1}, headers=headers)
    assert first.status_code == 202
    time.sleep(0.5)  # the key travels through the bus
    again = httpx.post(f"{b.url}/in/shop/order", json={"n": 1}, headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    # an instance started later learns the keys of the window from the stream
    c = daemon_factory(cfg, routes("out"), name="c").start()
    late = httpx.post(f"{c.url}/in/shop/order", json={"n": 1}, headers=headers)
    assert late.json()["id"] == first.json()["id"]
    assert sink.wait_for(1, timeout=20)
    time.sleep(1)
    assert len(sink.received) == 1
