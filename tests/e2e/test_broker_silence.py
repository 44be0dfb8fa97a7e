"""A broker that goes silent (a partition: no FIN, no RST — the suite's TCP proxy dropping every
byte) and a connection lost under prefetched messages, against one daemon:

* a request waiting on its publisher confirm is answered 503 + Retry-After within
  ``bus.confirm_timeout``, and ``/readyz`` turns 503 within seconds (the link's own probe),
  then 200 again once the broker speaks: the link was rebuilt;
* SIGTERM during the silence: one bounded stop (``stop_timeout``), every request in flight
  answered 503 + Retry-After, never 500, exit 0;
* messages prefetched on a channel that is gone are not delivered from it (the broker
  delivers them again): no duplicates beyond the deliveries that were in progress.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import orjson
from esbtest.logs import log_events, on_bus_link
from esbtest.waiting import wait_until
from test_rest_flow import ROUTES, flow_config, post_many

CONFIRM_TIMEOUT = 3.0


def ready(d: Any) -> int:
    return httpx.get(d.url + "/readyz", timeout=5).status_code


def post(d: Any, i: int, timeout: float = 60) -> tuple[httpx.Response | str, float]:
    started = time.monotonic()
    try:
        r: httpx.Response | str = httpx.post(
            f"{d.url}/in/shop/order.created", content=orjson.dumps({"n": i}), timeout=timeout,
            headers={"Content-Type": "application/json", "Idempotency-Key": f"order-{i}"})
    except httpx.HTTPError as exc:
        r = type(exc).__name__
    return r, time.monotonic() - started


def bus_link_lost(d: Any) -> bool:
    """Whether the daemon logged the loss of its bus link."""
    return any(on_bus_link(e) for e in log_events(d, "connection lost"))


def test_silent_broker_answers_503_in_seconds_and_readyz_follows(
        rabbit: Any, sink: Any, proxy: Any, daemon_factory: Any) -> None:
    bus = {**rabbit.bus("out"), "url": proxy.amqp_url, "confirm_timeout": f"{CONFIRM_TIMEOUT:g}s"}
    d = daemon_factory(flow_config(bus, sink.url), ROUTES).start()
    assert post(d, 0)[0].status_code == 202
    assert ready(d) == 200

    proxy.blackhole()
    silent_at = time.monotonic()
    r, took = post(d, 1)
    assert isinstance(r, httpx.Response) and r.status_code == 503, r
    assert r.headers.get("retry-after"), r.headers
    # Bounded by the confirm timeout (or sooner, once the link is suspect), plus the noise.
    assert took < CONFIRM_TIMEOUT + 5, took
    wait_until(lambda: ready(d) == 503, "readyz 503 during the silence", timeout=15)
    not_ready_after = time.monotonic() - silent_at
    r2, took2 = post(d, 2)
    assert isinstance(r2, httpx.Response) and r2.status_code == 503 and took2 < 5, (r2, took2)

    proxy.restore()  # the old connection is broken for good: the link is rebuilt
    wait_until(lambda: ready(d) == 200, "readyz 200 again", timeout=60, daemon=d)
    r3 = post(d, 3)[0]
    assert isinstance(r3, httpx.Response) and r3.status_code == 202, r3
    wait_until(lambda: {"order-0", "order-3"} <= set(sink.keys()), "delivered",
               timeout=30, daemon=d)
    print(f"\nsilent broker: first 503 after {took:.2f}s, /readyz 503 after "
          f"{not_ready_after:.2f}s, the next request refused in {took2:.2f}s")
    assert d.stop() == 0


def test_sigterm_during_silence_answers_503_and_stops_in_time(
        rabbit: Any, sink: Any, proxy: Any, daemon_factory: Any) -> None:
    # A long confirm wait, so requests are still in flight when the stop comes. The stop's
    # budget is short (the property is that it is kept) but longer than the daemon's close
    # reserve (3 s), so each phase of the stop still gets its share.
    stop_timeout = 4.0
    bus = {**rabbit.bus("out"), "url": proxy.amqp_url, "confirm_timeout": "60s"}
    config = {**flow_config(bus, sink.url), "stop_timeout": f"{stop_timeout:g}s"}
    d = daemon_factory(config, ROUTES).start()
    assert post(d, 0)[0].status_code == 202
    proxy.blackhole()
    outcomes: list[tuple[httpx.Response | str, float]] = []
    threads = [threading.Thread(target=lambda i=i: outcomes.append(post(d, 100 + i)))
               for i in range(10)]
    for t in threads:
        t.start()
    # Each request sent its first write (the claim of its idempotency key) into the silence:
    # they all wait on the broker now, none has been answered.
    wait_until(lambda: all(f"order-{100 + i}".encode() in proxy.unheard() for i in range(10)),
               "the 10 requests waiting on the broker", daemon=d)
    assert not outcomes, outcomes
    t0 = time.monotonic()
    code = d.stop(timeout=60)
    stopped_in = time.monotonic() - t0
    for t in threads:
        t.join(30)
    statuses = sorted(str(r.status_code) if isinstance(r, httpx.Response) else r
                      for r, _ in outcomes)
    print(f"\nSIGTERM in a silence: exit {code} after {stopped_in:.2f}s "
          f"(stop_timeout {stop_timeout:g}s); answers {statuses}")
    assert code == 0
    assert stopped_in < stop_timeout + 5, stopped_in
    assert len(outcomes) == 10
    for r, _ in outcomes:
        assert isinstance(r, httpx.Response), r
        assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text)
    assert "Traceback" not in d.log(200_000)


def test_messages_prefetched_on_a_lost_channel_are_not_delivered_from_it(
        rabbit: Any, sink: Any, proxy: Any, daemon_factory: Any) -> None:
    """100 messages wait behind a slow destination (2 at a time): the first two deliveries are
    held there until the connection has dropped, the other 98 sit prefetched on the channel.
    Before, the 98 prefetched ones were still delivered from the dead channel (and again by
    the broker): 98 duplicates. Now only the deliveries in progress may be repeated."""
    gate = threading.Event()
    held: list[str | None] = []

    def slow_until_the_cut(rec: Any) -> tuple[int, dict[str, str]]:
        if not gate.is_set():
            held.append(rec.key)
            gate.wait(30)
        return 200, {}

    sink.status_for = slow_until_the_cut
    bus = {**rabbit.bus("out"), "url": proxy.amqp_url, "prefetch": 100}
    # A delivery timeout longer than the hold, so the held two are not retried meanwhile.
    d = daemon_factory(flow_config(bus, sink.url, concurrency=2, timeout="30s"),
                       ROUTES).start()
    try:
        results = asyncio.run(post_many(d.url, 100))
        assert all(isinstance(r, httpx.Response) and r.status_code == 202
                   for r in results.values())
        wait_until(lambda: len(held) >= 2, "two deliveries in progress", timeout=30, daemon=d)
        # the broker handed every other message to the daemon: prefetched, not started
        wait_until(lambda: rabbit.topology().depths(rabbit.url, ["dest.out"])["dest.out"] == 0,
                   "all 100 messages prefetched", timeout=30, daemon=d)
        proxy.cut()
        # The held two end only once the daemon knows its channel is gone: one that ended
        # before would free its slot for a third delivery, started on a channel the daemon
        # still took for alive (so in progress, and rightly delivered again).
        wait_until(lambda: bus_link_lost(d), "the daemon noticed the lost connection",
                   timeout=30, daemon=d)
    finally:
        gate.set()
    wait_until(lambda: len(sink.keys()) == 100, "every order delivered", timeout=120,
               daemon=d)
    # Nothing left that could still arrive: the queue is empty, no delivery is in progress.
    wait_until(lambda: idle(d, rabbit), "the daemon idle", timeout=30, daemon=d)
    dupes = {k: c for k, c in sink.keys().items() if c > 1}
    print(f"\nconnection lost under 98 prefetched: {sum(c - 1 for c in dupes.values())} "
          f"duplicate deliveries (concurrency 2)")
    assert sum(c - 1 for c in dupes.values()) <= 2, dupes
    assert d.stop() == 0


def idle(d: Any, rabbit: Any) -> bool:
    """The destination's queue is empty and the daemon delivers nothing (twice, 0.2 s apart:
    a message between two deliveries is not taken for the end)."""
    for _ in range(2):
        if rabbit.topology().depths(rabbit.url, ["dest.out"])["dest.out"]:
            return False
        text = d.http.get(d.url + "/metrics", timeout=5).text
        if any(line.startswith("esb_in_flight{") and not line.endswith(" 0.0")
               for line in text.splitlines()):
            return False
        time.sleep(0.2)
    return True
