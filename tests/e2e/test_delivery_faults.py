"""Delivery under faults on the real broker: poison messages, outages and bulkheads,
Retry-After, rate limits — and the dead-letter tools an operator uses to recover.

``cli`` runs the ``esb`` console script (other modules use it too); this module's tests run the
same commands in this process (:mod:`esbtest.cli`), which spares an interpreter per call."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from email.utils import formatdate
from typing import Any

import orjson
import pytest
from esbtest.cli import esb
from esbtest.logs import log_events
from esbtest.waiting import wait_until
from test_rest_flow import accepted, post_many


def config(bus: dict[str, Any], sinks: dict[str, str], **delivery: Any) -> dict[str, Any]:
    return {
        "bus": bus,
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {
            name: {"adapter": "rest", "url": url + f"/{name}",
                   "delivery": {"concurrency": 32, "timeout": "5s",
                                "backoff": {"initial": "1s", "max": "4s"},
                                **delivery.get(name, {})}}
            for name, url in sinks.items()},
    }


def routes(*destinations: str) -> dict[str, Any]:
    return {"r.yaml": {"routes": [{"name": "all", "match": {}, "to": list(destinations)}]}}


def cli(d: Any, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "ESB_ADMIN_URL": d.url, "ESB_ADMIN_TOKEN": d.token, **(env or {})}
    return subprocess.run([sys.executable, "-m", "esb.bus.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_poison_messages_land_in_the_dlq_and_replay_after_the_fix(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    fixed = False

    def judge(rec: Any) -> tuple[int, dict[str, str]]:
        if not fixed and rec.key and int(rec.key.split("-")[1]) % 50 == 7:
            return 422, {}  # a permanent refusal: one in 50 is "poison"
        return 200, {}

    sink.status_for = judge
    d = daemon_factory(config(rabbit.bus("out"), {"out": sink.url}), routes("out")).start()
    n = 500  # 10 poison among them; a larger size adds no proof, only minutes
    poison = {f"order-{i}" for i in range(n) if i % 50 == 7}
    results = asyncio.run(post_many(d.url, n))
    assert len(accepted(results)) == n
    assert sink.wait_for(n - len(poison), timeout=180), len(sink.unique())

    def dead_letters() -> list[dict[str, Any]]:
        return json.loads(esb(d, "dlq", "list", "--limit", "1000", "--json").stdout)

    listed = wait_until(lambda: len(items := dead_letters()) >= len(poison) and items,
                        "the poison messages in the dlq", timeout=30, daemon=d)
    assert len(listed) == len(poison)
    by_id = {item["id"]: item for item in listed}
    assert all(item["destination"] == "out" and "422" in item["error"] for item in listed)
    assert all(item["attempts"] == 1 for item in listed), "a permanent failure is not retried"
    assert {item["key"] for item in listed} == poison, "exactly the poison messages"
    # every original body, untouched (the CLI once, the admin API for the rest)
    some = next(iter(by_id))
    shown = json.loads(esb(d, "dlq", "show", some, "--json").stdout)
    assert shown["idempotencykey"] in poison
    for eid, item in by_id.items():
        event = d.admin("GET", f"/admin/dlq/{eid}").json()
        i = int(item["key"].split("-")[1])
        assert event["data"] == {"n": i, "customer": f"c{i}", "total": i * 10}
        assert event["datacontenttype"] == "application/json"
    assert sink.unique() & poison == set()

    fixed = True
    r = esb(d, "dlq", "replay", "--all")
    assert r.returncode == 0, r.stderr
    assert f"replayed {len(poison)}; 0 left" in r.stdout
    assert sink.wait_for(n, timeout=60)
    assert poison <= sink.unique()
    assert json.loads(esb(d, "dlq", "list", "--json").stdout) == []
    dupes = sum(c - 1 for c in sink.keys().values())
    print(f"\npoison: {len(poison)} dead-lettered of {n}, all replayed; duplicates {dupes}")


def test_outage_keeps_messages_within_max_age_and_other_destination_flows(
        rabbit: Any, daemon_factory: Any) -> None:
    """The slow destination's listener is gone for longer than its whole attempt budget (the
    default 8) would last at its backoff, with a breaker that probes every second: nothing is
    dead-lettered, because the open breaker holds deliveries instead of burning attempts.
    Meanwhile the fast destination keeps pace with the senders (the bulkhead)."""
    from esbtest.sink import Sink

    # Without the breaker a message's 8 attempts would be spent within 0.2 + 6 * 0.4 = 2.6 s
    # (7 waits of at most the backoff's max); the outage lasts longer than that after the last
    # order is in. Meanwhile the breaker lets one probe through per cooldown: a handful, spread
    # over the 300 messages (a failed probe goes back behind the others), nowhere near 7 on
    # one of them. (Shorter than this would not outlast the budget; longer proves no more.)
    backoff = {"initial": "200ms", "max": "400ms"}
    outage = 4.0
    slow, fast = Sink(), Sink()
    try:
        slow.go_away()
        cfg = config(rabbit.bus("slow", "fast"), {"slow": slow.url, "fast": fast.url},
                     slow={"max_age": "10m", "breaker": {"cooldown": "1s"}, "backoff": backoff})
        d = daemon_factory(cfg, routes("slow", "fast")).start()
        results = asyncio.run(post_many(d.url, 300))
        posted = time.monotonic()
        assert len(accepted(results)) == 300
        assert fast.wait_for(300, timeout=60)
        fast_lag = max(r.at for r in fast.received) - posted
        time.sleep(max(0.0, outage - (time.monotonic() - posted)))  # the outage goes on
        st = d.admin("GET", "/admin/status").json()
        assert st["queues"]["dlq"] == 0, "still within max age: nothing may be dead-lettered"
        breaker = st["destinations"]["slow"]["breaker"]
        assert breaker != "closed", "the breaker holds the slow destination's deliveries"
        slow.come_back()
        assert slow.wait_for(300, timeout=120), len(slow.unique())
        st = d.admin("GET", "/admin/status").json()
        assert st["queues"]["dlq"] == 0
        print(f"\nbulkhead: fast destination's last delivery {fast_lag:+.2f}s after the last "
              f"post while slow was down (breaker {breaker}); slow got all 300 after it "
              "came back")
        # the fast destination kept up with the senders instead of waiting for the slow one
        assert fast_lag < 5
    finally:
        slow.close()
        fast.close()


RETRY_AFTER_FORMS = ["2", "3", "http-date"]


@pytest.fixture(scope="module")
def throttled(module_rabbit: Any, module_sink: Any, module_daemon_factory: Any) -> Any:
    """One daemon for the Retry-After forms: each test posts orders of its own (keys no other
    one uses) and answers them itself; a 429 does not count against the breaker."""
    return module_daemon_factory(config(module_rabbit.bus("out"), {"out": module_sink.url}),
                                 routes("out")).start()


@pytest.mark.parametrize("form", RETRY_AFTER_FORMS)
def test_retry_after_is_honoured(module_sink: Any, throttled: Any, form: str) -> None:
    """``Retry-After`` as seconds (2 is a retry tier, 3 is not) and as an HTTP-date: the
    retry comes no earlier than asked, and the daemon schedules it for what was asked, not
    rounded up to the next retry tier (1, 2, 4 s here). (How close to the asked time it comes
    depends on the machine's load — a wait that is no tier takes two parkings, each a broker
    dead-lettering — so it is printed, not asserted.)"""
    sink, d = module_sink, throttled
    first: dict[str, float] = {}
    due: dict[str, float] = {}
    retried: dict[str, float] = {}

    def throttle(rec: Any) -> tuple[int, dict[str, str]]:
        now = time.time()
        if rec.key not in first:
            first[rec.key] = now
            if form == "http-date":
                # an HTTP-date has whole seconds: due at the next whole second + 2
                at = float(int(now) + 3)
                due[rec.key] = at
                return 429, {"Retry-After": formatdate(at, usegmt=True)}
            due[rec.key] = now + int(form)
            return 429, {"Retry-After": form}
        retried.setdefault(rec.key, now)
        return 200, {}

    sink.status_for = throttle
    start = 100 * RETRY_AFTER_FORMS.index(form)
    log_from = d.log_path.stat().st_size
    results = asyncio.run(post_many(d.url, 20, start=start))
    assert len(accepted(results)) == 20
    wait_until(lambda: accepted(results) <= sink.unique(), "every order taken", timeout=30,
               daemon=d)
    late = [retried[k] - due[k] for k in due]
    print(f"\nRetry-After {form}: retried {min(late) * 1000:+.0f} ms to "
          f"{max(late) * 1000:+.0f} ms after it allowed")
    assert len(retried) == 20
    assert min(late) >= -0.01  # the sink's clock reads the header's time, ±rounding
    # What the daemon scheduled, read from its log (the wall clock above also holds the
    # broker's and the loaded machine's time): the asked wait, never a tier above it.
    scheduled = [e["retry_in"] for e in log_events(d, "delivery failed; retry scheduled",
                                                     since=log_from)]
    assert len(scheduled) == 20, scheduled
    longest = max(due[k] - first[k] for k in due)
    for wait in scheduled:
        if form == "http-date":  # counted from when the daemon read the 429: a bit less
            assert 0 < wait <= longest + 0.01, (wait, longest)
        else:
            assert wait == pytest.approx(int(form), abs=0.01), scheduled


def test_rate_limit_holds(rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    """No stretch of deliveries ever beats the limit: a token bucket (``rate``/s, bursting to
    one second's worth) lets at most ``burst + rate * T`` deliveries through in any T seconds.
    Checked on the arrival times at the destination, so a slow machine can only make it
    easier, never fail it. A backlog is built first (a daemon delivering at 1/s takes the
    posts, then stops), so the limiter, not the machine's speed, is what paces the run."""
    # 80: three seconds of pacing after the burst, some 60 deliveries each at least a token's
    # time after the one before — every stretch of them is checked; more only takes longer.
    rate, burst, n = 20, 20, 80
    bus = rabbit.bus("out")
    # concurrency 1: a stopping daemon finishes the deliveries that already wait for a token
    slow = {"rate_limit": "1/s", "concurrency": 1}
    filler = daemon_factory(config(bus, {"out": sink.url}, out=slow), routes("out"),
                            name="filler").start()
    assert len(accepted(asyncio.run(post_many(filler.url, n)))) == n
    assert filler.stop() == 0, filler.log()
    backlog = n - len(sink.unique())
    assert backlog >= n // 2, f"{n - backlog} delivered at 1/s while posting {n}"
    started = time.monotonic()  # the sink's clock
    d = daemon_factory(config(bus, {"out": sink.url}, out={"rate_limit": f"{rate}/s"}),
                       routes("out")).start()
    assert sink.wait_for(n, timeout=120), d.log()
    at = sorted(r.arrived for r in sink.received if r.arrived >= started)
    assert len(at) >= backlog
    # Arrival times (at the sink's socket, so the test server's own lag is not in them) carry
    # the network's jitter on top of the bucket's pacing.
    jitter = 0.5
    worst = max((j - i + 1) - (burst + rate * (at[j] - at[i] + jitter))
                for i in range(len(at)) for j in range(i, len(at)))
    print(f"\nrate limit {rate}/s: {len(at)} deliveries in {at[-1] - at[0]:.1f}s, "
          f"{(len(at) - burst) / max(at[-1] - at[0], 1e-9):.1f}/s after the burst")
    assert worst <= 0, f"{worst:.0f} deliveries over the limit in some stretch"


def test_unroutable_is_kept_and_replayed_after_a_deploy(rabbit: Any, sink: Any,
                                                        daemon_factory: Any,
                                                        tmp_path: Any) -> None:
    only_orders = {"r.yaml": {"routes": [{"name": "orders", "match": {"type": ["order"]},
                                          "to": ["out"]}]}}
    d = daemon_factory(config(rabbit.bus("out"), {"out": sink.url}), only_orders).start()
    body = orjson.dumps({"x": 1})
    import httpx

    for i in range(5):
        r = httpx.post(f"{d.url}/in/shop/invoice", content=body,
                       headers={"Content-Type": "application/json",
                                "Idempotency-Key": f"inv-{i}"})
        assert r.status_code == 202
    listed = json.loads(esb(d, "unroutable", "list", "--json").stdout)
    assert len(listed) == 5
    assert sink.unique() == set()
    new_routes = tmp_path / "new"
    new_routes.mkdir()
    (new_routes / "r.yaml").write_text(
        "routes:\n  - name: all\n    to: [out]\n")
    r = esb(d, "routes", "deploy", str(new_routes))
    assert r.returncode == 0, r.stderr
    r = esb(d, "unroutable", "replay", "--all")
    assert r.returncode == 0, r.stderr
    assert "replayed 5" in r.stdout
    assert sink.wait_for(5, timeout=30)
