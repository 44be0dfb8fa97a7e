"""The splitter through a daemon on RabbitMQ: a batch becomes its parts, each delivered with
its place in the sequence; a batch over the limit is dead-lettered whole; and a daemon killed
(-9) in the middle of publishing a large split leaves all of its parts or none."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import httpx
import orjson
from esbtest.waiting import settled, wait_until

ROUTES = {"split.yaml": {"routes": [{
    "name": "orders", "from": ["shop"], "match": {"type": ["batch"]},
    "split": {"jmespath": "orders", "max_parts": 3000},
    "to": ["erp"]}]}}


def config(rabbit: Any, sink: Any) -> dict[str, Any]:
    return {
        "bus": rabbit.bus("erp"),
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop", "max_body": 4_000_000}},
        "destinations": {"erp": {"adapter": "rest", "url": sink.url + "/erp",
                                 "cloudevents": "binary",
                                 "delivery": {"concurrency": 64}}},
    }


def parts_of(sink: Any, tag: str) -> set[str]:
    return {k for k in sink.unique() if k and k.startswith(f"{tag}.")}


def batch(n: int, tag: str) -> dict[str, Any]:
    return {"orders": [{"tag": tag, "n": i} for i in range(n)]}


def test_a_batch_becomes_its_parts_in_sequence(rabbit: Any, sink: Any,
                                               daemon_factory: Any) -> None:
    d = daemon_factory(config(rabbit, sink), ROUTES).start()
    r = httpx.post(f"{d.url}/in/shop/batch", json=batch(40, "b1"),
                   headers={"Idempotency-Key": "b1"}, timeout=30)
    assert r.status_code == 202, r.text
    assert sink.wait_for(40, timeout=30)
    keys = sink.unique()
    assert keys == {f"b1.{i}" for i in range(1, 41)}
    first = next(rec for rec in sink.received if rec.key == "b1.1")
    assert orjson.loads(first.body) == {"tag": "b1", "n": 0}
    # the CloudEvents sequence extension and the split's correlation, as binary-mode headers
    assert first.headers["ce-sequence"] == "01"
    assert first.headers["ce-splitid"] == r.json()["id"]
    assert first.headers["ce-splitsize"] == "40" and first.headers["ce-splitindex"] == "1"
    # over the limit: accepted, and dead-lettered whole (no part published)
    too_many = httpx.post(f"{d.url}/in/shop/batch", json=batch(3001, "big"), timeout=30)
    assert too_many.status_code == 202
    status = wait_until(lambda: (s := d.admin("GET", "/admin/status").json())["queues"]["dlq"]
                        == 1 and s, "the oversized batch in the DLQ", timeout=20)
    assert status["queues"]["dlq"] == 1
    wait_until(lambda: settled(d), "nothing left to deliver", timeout=20, daemon=d)
    assert not any(k and k.startswith(too_many.json()["id"]) for k in sink.unique())


def test_a_daemon_killed_mid_split_leaves_all_parts_or_none(rabbit: Any, sink: Any,
                                                            daemon_factory: Any) -> None:
    d = daemon_factory(config(rabbit, sink), ROUTES).start()
    n = 2000
    rng = random.Random(7)
    started = time.monotonic()
    warm = httpx.post(f"{d.url}/in/shop/batch", json=batch(n, "warm"), timeout=60)
    took = time.monotonic() - started  # how long one split of n parts takes here
    assert warm.status_code == 202
    outcomes = []
    for round_ in range(5):
        tag = f"k{round_}"
        answer: list[Any] = []

        def send(tag: str = tag, answer: list[Any] = answer) -> None:
            try:
                answer.append(httpx.post(f"{d.url}/in/shop/batch", json=batch(n, tag),
                                         headers={"Idempotency-Key": tag}, timeout=30))
            except httpx.HTTPError as exc:
                answer.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(rng.uniform(0.3, 1.1) * took)  # before, during or after the commit
        d.kill()
        sender.join(30)
        d.start()
        # Whatever the killed daemon committed is on the queue now: once the restarted one
        # has nothing queued or in flight, every part published has arrived.
        wait_until(lambda: settled(d), f"round {round_}: the parts delivered",
                   timeout=60, daemon=d)
        got = parts_of(sink, tag)
        assert len(got) in (0, n), f"round {round_}: {len(got)} of {n} parts published"
        outcomes.append(len(got))
        answered = answer and isinstance(answer[0], httpx.Response) and \
            answer[0].status_code == 202
        if answered:
            assert len(got) == n, "the sender was told 202 but the parts are not all there"
    print(f"one split of {n} took {took:.2f}s; parts published per killed round: {outcomes}")
