"""The crash soak: three daemons on one RabbitMQ, killed with -9 and restarted at random, every
broker connection cut twice, a destination that fails 10 % of calls and goes down once — and
every accepted message is delivered. ``--long`` runs it at full size."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from esbtest.proxy import TcpProxy

ROUTES = {"r.yaml": {"routes": [{"name": "all", "match": {}, "to": ["out"]}]}}


@pytest.fixture
def size(request: pytest.FixtureRequest) -> dict[str, float]:
    """The soak's size; ``settle`` bounds the wait for the backlog after the load.

    ``claim_ttl`` is the bus's ``idempotency_claim_ttl``: how long the key of a request that
    a killed daemon was taking stays blocked (other daemons answer 409 meanwhile), so it
    sets how long the senders need after the last kill. Under --long it is the default 30 s;
    here 10 s, twice the confirm timeout (5 s) that bounds each broker wait of a daemon
    holding a claim. (Were a live claim to lapse, the key would be published twice: a
    duplicate, which at-least-once allows and this test counts without failing.)

    At the default size every fault still happens during the load: kills every 2 s (at least
    three), both connection cuts, and an outage longer than the breaker's 2 s cooldown, so
    a probe meets it too."""
    if request.config.getoption("--long"):
        return {"messages": 20_000, "rate": 200, "outage": 30, "kill_every": 4, "settle": 600,
                "claim_ttl": 30}
    return {"messages": 1_200, "rate": 100, "outage": 3, "kill_every": 2, "settle": 240,
            "claim_ttl": 10}


# Under --long: about 100 s of load and 30 s of outage, then up to 600 s to settle — far past
# the suite's 300 s timeout (tests/conftest.py applies this only when --long is given).
@pytest.mark.long_timeout(1800)
def test_crash_soak(rabbit: Any, sink: Any, daemon_factory: Any, size: dict[str, float]) -> None:
    rng = random.Random(20261124)
    flaky = {"on": True}

    def judge(rec: Any) -> tuple[int, dict[str, str]]:
        if flaky["on"] and rng.random() < 0.10:
            return 503, {}
        return 200, {}

    sink.status_for = judge
    u = urlsplit(rabbit.url)
    proxies = [TcpProxy(u.hostname or "127.0.0.1", u.port or 5672) for _ in range(3)]
    daemons = []
    for i, proxy in enumerate(proxies):
        url = f"amqp://{u.username}:{u.password}@127.0.0.1:{proxy.port}{u.path or '/'}"
        config = {
            "bus": rabbit.bus("out", url=url, heartbeat=5,
                              idempotency_claim_ttl=f"{size['claim_ttl']:g}s"),
            "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
            "destinations": {"out": {"adapter": "rest", "url": sink.url + "/out",
                                     "delivery": {"concurrency": 16, "timeout": "5s",
                                                  "max_attempts": 100, "max_age": "30m",
                                                  "backoff": {"initial": "1s", "max": "4s"},
                                                  "breaker": {"failures": 20,
                                                              "cooldown": "2s"}}}},
        }
        daemons.append(daemon_factory(config, ROUTES, name=f"d{i}"))
    for d in daemons:  # all three start at once
        d.start(wait=False)
    for d in daemons:
        d.wait_ready(60)

    n = int(size["messages"])
    accepted: set[str] = set()
    kills = cuts = 0
    started = time.monotonic()

    async def send_all() -> None:
        sem = asyncio.Semaphore(48)
        # aiohttp, not httpx: see test_rest_flow.post_many (a tenth of the CPU per request)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10),
                                         connector=aiohttp.TCPConnector(limit=64)) as c:
            async def one(i: int) -> None:
                key = f"soak-{i}"
                body = orjson.dumps({"n": i})
                async with sem:
                    for attempt in range(200):  # a sender retries until accepted
                        d = daemons[(i + attempt) % len(daemons)]
                        try:
                            async with c.post(f"{d.url}/in/shop/order", data=body,
                                              headers={"Content-Type": "application/json",
                                                       "Idempotency-Key": key}) as r:
                                await r.read()
                                if r.status == 202:
                                    accepted.add(key)
                                    return
                        except (aiohttp.ClientError, TimeoutError):
                            pass
                        await asyncio.sleep(0.05)

            tasks = []
            for i in range(n):
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(1 / size["rate"])
            await asyncio.gather(*tasks)

    async def chaos() -> None:
        nonlocal kills, cuts
        load_time = n / size["rate"]
        cut_at = {load_time * 0.3, load_time * 0.6}
        outage_at = load_time * 0.45
        t0 = time.monotonic()
        outage_done = False
        # A kill every `kill_every` s while the load lasts, and on until every fault happened
        # (a slow machine can stretch the steps past the load's end: the faults must not
        # depend on its speed).
        while (time.monotonic() - t0 + size["kill_every"] < load_time or kills < 3 or cut_at
               or not outage_done):
            await asyncio.sleep(size["kill_every"])
            victim = rng.choice(daemons)
            await asyncio.to_thread(victim.kill)
            kills += 1
            await asyncio.sleep(0.5)
            await asyncio.to_thread(victim.start, False)
            elapsed = time.monotonic() - t0
            for at in sorted(cut_at):
                if elapsed >= at:
                    cut_at.discard(at)
                    for p in proxies:
                        p.cut()
                    cuts += 1
            if not outage_done and elapsed >= outage_at:
                outage_done = True
                sink.down = True
                await asyncio.sleep(size["outage"])
                sink.down = False

    async def run() -> None:
        await asyncio.gather(send_all(), chaos())

    try:
        asyncio.run(run())
        for d in daemons:
            if d.proc is None or d.proc.poll() is not None:
                d.start(wait=False)
        for d in daemons:
            d.wait_ready(60)
        flaky["on"] = False
        deadline = time.monotonic() + size["settle"]
        while time.monotonic() < deadline and not accepted <= sink.unique():
            time.sleep(0.5)
        counts = sink.keys()
        delivered = set(counts) & accepted
        lost = accepted - set(counts)
        unasked = set(counts) - accepted  # a key no sender was given 202 for (or none)
        dupes = sum(c - 1 for c in counts.values())
        dlq = daemons[0].admin("GET", "/admin/status").json()["queues"]["dlq"]
        duration = time.monotonic() - started
        print(f"\ncrash soak: accepted {len(accepted)}/{n}, delivered {len(delivered)}, "
              f"lost {len(lost)}, duplicates seen {dupes} (suppressed by key), dlq {dlq}, "
              f"not accepted {len(unasked)}, kills {kills}, connection cuts {cuts}, "
              f"duration {duration:.0f}s")
        assert len(accepted) == n
        assert not lost, f"lost {len(lost)}: {sorted(lost)[:10]}"
        assert None not in counts, "every delivery carries the envelope's idempotency key"
        assert set(counts) <= accepted, f"delivered but never accepted: {sorted(unasked)[:10]}"
        assert dlq == 0
        assert kills >= 3 and cuts == 2
    finally:
        for p in proxies:
            p.close()
