"""Inbound de-duplication across instances survives the death of the instance that answered.

The record of an accepted key is committed with the envelope itself, before the sender gets its
202, so an instance killed right after answering has already told the others."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from esbtest.waiting import settled, wait_until
from test_delivery_faults import config, routes


def test_keys_answered_by_a_killed_instance_are_known_to_the_others(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    cfg = config(rabbit.bus("out"), {"out": sink.url})
    a = daemon_factory(cfg, routes("out"), name="a").start()
    b = daemon_factory(cfg, routes("out"), name="b").start()
    first: dict[str, str] = {}
    with httpx.Client(timeout=10) as client:
        for i in range(20):
            r = client.post(f"{a.url}/in/shop/order", json={"n": i},
                            headers={"Idempotency-Key": f"dying-{i}"})
            assert r.status_code == 202
            first[f"dying-{i}"] = r.json()["id"]
        a.kill()  # straight after the last answer: no time to announce anything later
        for i, (key, eid) in enumerate(first.items()):
            again = client.post(f"{b.url}/in/shop/order", json={"n": i},
                                headers={"Idempotency-Key": key})
            assert again.status_code == 202
            assert again.json()["id"] == eid, key
            assert again.headers.get("idempotent-replayed") == "true"
            # the same key with another body is refused, and not published either
            changed = client.post(f"{b.url}/in/shop/order", json={"n": -1},
                                  headers={"Idempotency-Key": key})
            assert changed.status_code == 422, changed.text
    # every key delivered (a delivery a's death interrupted may come twice: at-least-once),
    # and never the second request's body: it was not published
    a.start()
    assert sink.wait_for(20, timeout=30)
    wait_until(lambda: settled(a) and settled(b), "nothing left to deliver", daemon=a)
    assert sink.unique() == set(first)
    assert all(orjson.loads(rec.body)["n"] >= 0 for rec in sink.received), \
        "a repeated request was published"
