"""The same idempotency key at several instances at once is published once, through three
daemons on RabbitMQ: concurrent requests with one ``Idempotency-Key`` (and webhook deliveries
with one ``webhook-id``) sent to all three in the same instant, a changed body under a used key
(422 problem+json), and an instance killed (-9) while keys are being taken.

Nothing is routed, so every envelope the bus accepted lands in the ``unroutable`` queue, where
the test counts them by id: a key published twice would be there twice."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
from esbtest.daemon import start_fleet
from esbtest.waiting import wait_until
from kombu import Connection
from standardwebhooks import Webhook

WHSEC = "whsec_" + base64.b64encode(b"race-test-webhook-secret-0123456").decode()


def config(rabbit: Any, **bus: Any) -> dict[str, Any]:
    return {
        "bus": rabbit.bus(**bus),
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"},
                    "hooks": {"adapter": "webhook", "path": "/hooks",
                              "secrets": ["${RACE_WHSEC}"]}},
    }


def published(rabbit: Any) -> Counter[str]:
    """Envelope ids (and idempotency keys) in the unroutable queue, left where they are."""
    seen: Counter[str] = Counter()
    with Connection(rabbit.url) as conn:
        channel = conn.channel()
        while True:
            message = channel.basic_get(rabbit.topology().queue("unroutable"), no_ack=False)
            if message is None:
                break
            env = orjson.loads(message.body)
            seen[env.get("idempotencykey") or env["id"]] += 1
        channel.close()
    return seen


def at_once(calls: list[Any]) -> list[Any]:
    """Run every call in its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> Any:
        barrier.wait()
        try:
            return call()
        except httpx.HTTPError as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_one_key_sent_to_three_instances_at_once_is_published_once(
        rabbit: Any, daemon_factory: Any) -> None:
    cfg = config(rabbit)
    daemons = start_fleet([daemon_factory(cfg, name=n, env={"RACE_WHSEC": WHSEC})
                           for n in ("a", "b", "c")])
    keys = [f"race-{n}" for n in range(25)]
    with httpx.Client(timeout=20) as client:
        for key in keys:
            answers = at_once([
                lambda d=d, key=key: client.post(f"{d.url}/in/shop/order", json={"key": key},
                                                 headers={"Idempotency-Key": key})
                for d in daemons for _ in range(2)])
            statuses = [a.status_code for a in answers]
            assert set(statuses) <= {202, 409}, statuses
            first = [a for a in answers
                     if a.status_code == 202 and "idempotent-replayed" not in a.headers]
            assert len(first) == 1, f"{key}: {len(first)} requests published it ({statuses})"
            ids = {a.json()["id"] for a in answers if a.status_code == 202}
            assert len(ids) == 1, f"{key}: replays answered other ids {ids}"
        # Webhook deliveries: one delivery id to three instances at once.
        hook = Webhook(WHSEC)
        for n in range(10):
            msg_id, body = f"msg_race{n}", orjson.dumps({"type": "invoice.paid", "n": n})
            now = int(time.time())
            headers = {"webhook-id": msg_id, "webhook-timestamp": str(now),
                       "webhook-signature": hook.sign(msg_id, _utc(now), body.decode()),
                       "content-type": "application/json"}
            answers = at_once([lambda d=d, body=body, headers=headers: client.post(
                f"{d.url}/hooks", content=body, headers=headers) for d in daemons])
            statuses = sorted(a.status_code for a in answers)
            assert statuses.count(202) == 1 and set(statuses) <= {202, 409}, statuses
        # The same key with another body: 422 problem+json, nothing published.
        again = client.post(f"{daemons[1].url}/in/shop/order", json={"key": "changed"},
                            headers={"Idempotency-Key": keys[0]})
        assert again.status_code == 422
        assert again.headers["content-type"].startswith("application/problem+json")
        assert "another body" in again.json()["detail"]
    expected = set(keys) | {f"msg_race{n}" for n in range(10)}
    counts = wait_until(lambda: (c := published(rabbit)) and set(c) == expected and c,
                        "every key in the queue", timeout=20)
    assert all(c == 1 for c in counts.values()), {k: c for k, c in counts.items() if c > 1}


def test_keys_being_taken_when_an_instance_is_killed_are_published_once(
        rabbit: Any, daemon_factory: Any) -> None:
    """Senders keep sending keys to every instance at once and retry whatever got no final
    answer (an error, 409, 503), as a client does; one instance is killed in the middle."""
    cfg = config(rabbit, idempotency_claim_ttl="2s")
    daemons = start_fleet([daemon_factory(cfg, name=n, env={"RACE_WHSEC": WHSEC})
                           for n in ("a", "b", "c")])
    keys = [f"kill-{n}" for n in range(60)]
    pending = set(keys)
    killer = threading.Timer(1.0, daemons[0].kill)
    killer.start()
    deadline = time.monotonic() + 90
    with httpx.Client(timeout=10) as client:
        while pending and time.monotonic() < deadline:
            for key in sorted(pending)[:10]:
                live = [d for d in daemons if d.proc and d.proc.poll() is None]
                answers = at_once([lambda d=d, key=key: client.post(
                    f"{d.url}/in/shop/order", json={"key": key},
                    headers={"Idempotency-Key": key}) for d in live])
                if any(isinstance(a, httpx.Response) and a.status_code == 202
                       for a in answers):
                    pending.discard(key)
            time.sleep(0.05)
    killer.join()
    assert not pending, f"never accepted: {sorted(pending)}"
    counts = wait_until(lambda: (c := published(rabbit)) and set(c) == set(keys) and c,
                        "every key in the queue", timeout=20)
    assert all(c == 1 for c in counts.values()), {k: c for k, c in counts.items() if c > 1}


def _utc(ts: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)
