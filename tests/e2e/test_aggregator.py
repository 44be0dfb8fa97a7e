"""The aggregator through three daemons on RabbitMQ: orders collected per customer until four
have come (or three seconds passed since the first), one pick list emitted per group — while
instances are killed (-9); then every daemon killed before a timeout and started after it.
Nothing lost (every order in a pick list), nothing emitted twice (no order in two lists)."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

import httpx
import orjson
from esbtest.daemon import start_fleet
from esbtest.waiting import settled, wait_until

ROUTES = {"flow.yaml": {"routes": [
    {"name": "orders-to-picks", "from": ["shop"], "match": {"type": ["order"]},
     "to": ["picks"]},
    {"name": "picklists-out", "match": {"type": ["picklist"]}, "to": ["out"]}]}}


#: The aggregate's "since the first member" timeout, in seconds: longer than the four orders
#: of a customer take to send (they go one after the other), so a full group completes by its
#: count; every second of it is waited out in phase 2.
TIMEOUT = 3


def start_all(daemons: list[Any]) -> None:
    """Start again, side by side, daemons that have run on this bus before (the route store
    is seeded: see start_fleet for a first start)."""
    for d in daemons:
        d.start(wait=False)
    for d in daemons:
        d.wait_ready(60)


def config(rabbit: Any, sink: Any) -> dict[str, Any]:
    return {
        "bus": rabbit.bus("picks", "out", idempotency_claim_ttl="2s"),
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {
            "picks": {"adapter": "aggregate", "correlation": "data.customer",
                      "complete": {"count": 4, "timeout": f"{TIMEOUT}s"}, "merge": "json-list",
                      "type": "picklist", "partitions": 2},
            "out": {"adapter": "rest", "url": sink.url + "/out",
                    "delivery": {"backoff": {"initial": "200ms", "max": "1s"}}}},
    }


def send(daemons: list[Any], orders: list[dict[str, Any]]) -> None:
    """Post every order (with its own Idempotency-Key) to a live daemon, retrying as a
    client does until one answers 202."""
    with httpx.Client(timeout=10) as client:
        for order in orders:
            deadline = time.monotonic() + 60
            while True:
                live = [d for d in daemons if d.proc and d.proc.poll() is None]
                try:
                    r = client.post(f"{random.choice(live).url}/in/shop/order", json=order,
                                    headers={"Idempotency-Key": order["id"]})
                    if r.status_code == 202:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{order['id']} never accepted"
                time.sleep(0.1)


def emitted(sink: Any) -> dict[str, list[dict[str, Any]]]:
    """Pick lists received, by their key (a redelivered one counts once)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in list(sink.received):
        out[rec.key or ""] = orjson.loads(rec.body)
    return out


def check(lists: dict[str, list[dict[str, Any]]], orders: list[dict[str, Any]]) -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for key, members in lists.items():
        assert len({m["customer"] for m in members}) == 1, f"{key} mixes customers"
        for m in members:
            where[m["id"]].append(key)
    twice = {o: ks for o, ks in where.items() if len(ks) > 1}
    assert not twice, f"orders emitted in more than one pick list: {twice}"
    assert set(where) == {o["id"] for o in orders}, "orders missing from the pick lists"


def test_groups_survive_killed_instances_and_timeouts_fire_after_a_restart(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    daemons = start_fleet([daemon_factory(config(rabbit, sink), ROUTES, name=n)
                           for n in ("a", "b", "c")])
    rng = random.Random(11)
    customers = list(range(24))
    rng.shuffle(customers)  # one customer's orders come together, customers in any order
    full = [{"id": f"o{c}-{i}", "customer": f"c{c}"} for c in customers for i in range(4)]
    # Phase 1: full groups, while an instance is killed -9 and restarted twice (its restart
    # overlaps the orders that follow: the others take them meanwhile).
    for chunk in range(3):
        send(daemons, full[chunk * 32:(chunk + 1) * 32])
        if chunk < 2:
            victim = daemons[rng.randrange(3)]
            victim.wait_ready(60)  # (a victim of the round before is up again first)
            victim.kill()
            victim.start(wait=False)
    wait_until(lambda: sum(map(len, emitted(sink).values())) >= len(full), "every order in a "
               "pick list", timeout=60)
    for d in daemons:
        d.wait_ready(60)
    # Phase 2: partial groups complete by timeout — every daemon dies before it and comes
    # back after it; the timeout still fires (from the first member's time, on the broker).
    partial = [{"id": f"p{c}-{i}", "customer": f"t{c}"} for c in range(5) for i in range(2)]
    send(daemons, partial)
    sent = time.monotonic()  # every group's first member was routed before this
    for d in daemons:
        d.kill()
    time.sleep(max(0.0, sent + TIMEOUT + 0.5 - time.monotonic()))  # the timeouts pass
    start_all(daemons)
    wait_until(lambda: sum(map(len, emitted(sink).values())) >= len(full) + len(partial),
               "the timed-out pick lists", timeout=60)
    # Anything emitted twice is on its way until no group is open, nothing is queued for the
    # aggregate or for out, and nothing is in flight — on every instance.
    wait_until(lambda: all(settled(d) for d in daemons),
               "every instance to have nothing left to emit or deliver", timeout=60)
    lists = emitted(sink)
    check(lists, full + partial)
    timed_out = [m for m in lists.values() if m[0]["customer"].startswith("t")]
    assert sorted(len(m) for m in timed_out) == [2] * 5  # each fired once, whole
    # a kill can delay a group past its timeout (then it comes as two lists); most are whole
    assert sum(len(m) == 4 for m in lists.values()) >= 18, sorted(map(len, lists.values()))
