"""Ordered delivery by key: per-key order holds through transient failures and retries."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import httpx
import orjson


def test_per_key_order_survives_failures(rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    rng = random.Random(7)
    sink.status_for = lambda rec: (503, {}) if rng.random() < 0.2 else (200, {})
    config = {
        "bus": rabbit.bus("out"),
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"out": {"adapter": "rest", "url": sink.url + "/out",
                                 "delivery": {"ordered": {"key": "data.customer",
                                                          "partitions": 4},
                                              "max_attempts": 50,
                                              "backoff": {"initial": "100ms", "max": "200ms"},
                                              "breaker": False}}},
    }
    routes = {"r.yaml": {"routes": [{"name": "all", "to": ["out"]}]}}
    rabbit.destinations.add("out")
    d = daemon_factory(config, routes).start()
    customers, per_customer = 8, 25

    async def send() -> None:
        async with httpx.AsyncClient(timeout=10) as c:
            async def customer(cust: int) -> None:
                for seq in range(per_customer):  # in order, one at a time per key
                    r = await c.post(f"{d.url}/in/shop/order",
                                     content=orjson.dumps({"customer": f"c{cust}",
                                                           "seq": seq}),
                                     headers={"Content-Type": "application/json",
                                              "Idempotency-Key": f"c{cust}-{seq}"})
                    assert r.status_code == 202

            await asyncio.gather(*(customer(i) for i in range(customers)))

    asyncio.run(send())
    assert sink.wait_for(customers * per_customer, timeout=120)
    order: dict[str, list[int]] = defaultdict(list)
    for rec in sink.received:
        body = orjson.loads(rec.body)
        order[body["customer"]].append(body["seq"])
    failures = sum(1 for _, status in sink.requests if status == 503)
    print(f"\nordered: {customers}x{per_customer} messages, {failures} transient failures")
    assert failures > 0
    for cust, seqs in order.items():
        assert seqs == sorted(seqs) == list(range(per_customer)), cust
    st = d.admin("GET", "/admin/status").json()
    assert st["destinations"]["out"]["ordered"] is True
