"""``/readyz`` 200 means the daemon accepts messages: every link a message needs is up, in
every worker that may take the next request — not merely the bus link of the process that
happened to answer.

After a broker outage the links come back one by one (each on its own reconnect schedule), so
the suite's proxy keeps out one link only — the idempotency log's, which a keyed message is
claimed on before it is published — and holds that state for as long as the test looks.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from esbtest.waiting import wait_until
from test_broker_silence import post, ready
from test_rest_flow import ROUTES, flow_config
from test_workers import events

IDEMPOTENCY_LINK = "esb idempotency"


def readyz(d: Any) -> httpx.Response:
    # A fresh connection each time: with workers, any of them may answer.
    return httpx.get(d.url + "/readyz", timeout=5, headers={"Connection": "close"})


def post_unkeyed(d: Any, i: int) -> httpx.Response:
    return httpx.post(f"{d.url}/in/shop/order.created", content=orjson.dumps({"n": i}),
                      timeout=30, headers={"Content-Type": "application/json"})


def test_readyz_waits_for_the_idempotency_log_not_only_the_bus(
        rabbit: Any, sink: Any, proxy: Any, daemon_factory: Any) -> None:
    bus = {**rabbit.bus("out"), "url": proxy.amqp_url}
    d = daemon_factory(flow_config(bus, sink.url), ROUTES).start()
    assert post(d, 0)[0].status_code == 202  # type: ignore[union-attr]

    assert proxy.shut_out(IDEMPOTENCY_LINK) == 1
    wait_until(lambda: ready(d) == 503, "readyz 503 without the idempotency log", timeout=30,
               daemon=d)
    r = readyz(d)
    assert r.status_code == 503 and r.json()["reason"] == "idempotency log not connected", \
        r.text
    keyed = post(d, 1)[0]
    assert isinstance(keyed, httpx.Response) and keyed.status_code == 503, keyed
    assert "idempotency log" in keyed.json()["detail"] and keyed.headers["retry-after"]
    # The bus itself is up: a message without a key needs no claim and is taken.
    assert post_unkeyed(d, 2).status_code == 202

    proxy.let_in()
    wait_until(lambda: ready(d) == 200, "readyz 200 again", timeout=60, daemon=d)
    # The first keyed message after the 200 is taken: no window where /readyz runs ahead.
    r3 = post(d, 3)[0]
    assert isinstance(r3, httpx.Response) and r3.status_code == 202, r3
    wait_until(lambda: {"order-0", "order-3"} <= set(sink.keys()), "delivered", timeout=30,
               daemon=d)
    assert d.stop() == 0


def test_with_workers_readyz_speaks_for_every_worker(
        rabbit: Any, sink: Any, proxy: Any, daemon_factory: Any) -> None:
    """One worker's idempotency link is kept out: whichever worker answers ``/readyz``, it
    says 503 (naming that worker when it is the other one), since the next request may land
    on it; once it is back, every keyed message is taken, on whichever worker."""
    bus = {**rabbit.bus("out"), "url": proxy.amqp_url}
    d = daemon_factory(flow_config(bus, sink.url), ROUTES,
                       run_args=["--workers", "2"]).start()
    running = wait_until(lambda: len(events(d, "esb running")) >= 2 and events(d, "esb running"),
                         "both workers running", timeout=60, daemon=d)
    first = next(e for e in running if e["worker"] == 1)
    wait_until(lambda: all(readyz(d).status_code == 200 for _ in range(6)),
               "both workers ready", timeout=30, daemon=d)

    assert proxy.shut_out(f"{IDEMPOTENCY_LINK} {first['instance']}") == 1
    wait_until(lambda: all(readyz(d).status_code == 503 for _ in range(6)),
               "readyz 503 from both workers", timeout=30, daemon=d)
    answers = [readyz(d) for _ in range(20)]
    assert all(r.status_code == 503 for r in answers), [r.text for r in answers]
    reasons = {r.json()["reason"] for r in answers}
    assert reasons <= {"idempotency log not connected",
                       "worker 1: idempotency log not connected"}, reasons

    proxy.let_in()
    wait_until(lambda: ready(d) == 200, "readyz 200 again", timeout=60, daemon=d)
    # Ten keyed messages on fresh connections: both workers take some; none is refused.
    results = [post(d, 10 + i)[0] for i in range(10)]
    assert all(isinstance(r, httpx.Response) and r.status_code == 202 for r in results), \
        [getattr(r, "text", r) for r in results]
    wait_until(lambda: {f"order-{10 + i}" for i in range(10)} <= set(sink.keys()),
               "delivered", timeout=30, daemon=d)
    assert d.stop() == 0
