"""``esb status`` of two instances on RabbitMQ while a destination fails: instances, route
version, queue depths, messages waiting out a backoff, breaker states across instances, and the
dead-letter and unroutable counts — in the table and in ``--json``."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from test_delivery_faults import cli, config


def test_status_shows_where_messages_are(rabbit: Any, sink: Any,
                                         daemon_factory: Any) -> None:
    sink.status_for = lambda rec: (503, {})  # the destination fails, transiently
    cfg = config(rabbit.bus("out"), {"out": sink.url},
                 out={"max_attempts": 50, "backoff": {"initial": "20s", "max": "40s"},
                      "breaker": {"failures": 2, "cooldown": "60s"}})
    routes = {"r.yaml": {"routes": [{"name": "orders", "match": {"type": ["order"]},
                                     "to": ["out"]}]}}
    a = daemon_factory(cfg, routes, name="a").start()
    b = daemon_factory(cfg, routes, name="b").start()
    with httpx.Client(timeout=10) as client:
        for i in range(12):
            target = a if i % 2 else b
            assert client.post(f"{target.url}/in/shop/order", json={"n": i}).status_code == 202
        assert client.post(f"{a.url}/in/shop/invoice", json={}).status_code == 202

    deadline = time.monotonic() + 30
    while True:
        st = json.loads(cli(a, "status", "--json").stdout)
        instances = st["instances"]
        states = {i["instance"]: (i.get("destinations") or {}).get("out", {}).get("breaker")
                  for i in instances}
        if (st["queues"]["retrying"] > 0 and len(instances) == 2
                and "open" in states.values()):
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.5)

    assert st["routes"]["version"] >= 1 and st["routes"]["count"] == 1
    assert st["queues"]["unroutable"] == 1 and st["queues"]["dlq"] == 0
    assert st["destinations"]["out"]["adapter"] == "rest"
    # One answer for this instance's breaker: the top level and its own presence entry.
    own = next(i for i in instances if i["self"])
    assert st["destinations"]["out"]["breaker"] == own["destinations"]["out"]["breaker"]
    assert {i["route_version"] for i in instances} == {st["routes"]["version"]}

    text = cli(a, "status").stdout
    assert "INSTANCE" in text and "DESTINATION" in text and "BREAKER" in text
    assert "open" in text
    assert "dead letters 0" in text and "unroutable 1" in text
    waiting = int(text.rsplit("waiting to retry", 1)[1].split()[0])
    assert waiting > 0
    print(f"\n{text}")
