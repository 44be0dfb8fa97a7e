"""A schedule fires once across the fleet: three daemons on RabbitMQ run one interval schedule;
the lease holder is killed (-9) twice. Every slot is one envelope (no slot fired twice, no
second sequence of slots from another instance), and ``esb status`` shows the next fire."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from typing import Any

import orjson
from esbtest.cli import esb
from esbtest.daemon import start_fleet
from esbtest.waiting import wait_until
from kombu import Connection
from test_singleton_sources import holders

INTERVAL = 0.3


def fired(rabbit: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    with Connection(rabbit.url) as conn:
        channel = conn.channel()
        while (message := channel.basic_get(rabbit.topology().queue("unroutable"))) is not None:
            env = orjson.loads(message.body)
            assert env["data"] == {"job": "sync", "tags": ["crm"]}
            seen[env["subject"]] += 1
        channel.close()
    return seen


def test_an_interval_fires_once_across_the_fleet_through_kills(
        rabbit: Any, daemon_factory: Any) -> None:
    cfg = {"bus": rabbit.bus(lease_heartbeat=2, lease_retry="200ms"),
           "sources": {"crm": {"adapter": "schedule", "every": f"{int(INTERVAL * 1000)}ms",
                               "type": "sync.requested",
                               "payload": {"job": "sync", "tags": ["{source}"]}},
                       "tick": {"adapter": "schedule", "cron": "0 3 * * *",
                                "timezone": "Europe/Berlin"}}}
    daemons = start_fleet([daemon_factory(cfg, name=n) for n in ("a", "b", "c")])

    def fires_more(n: int) -> None:
        """Wait until the holder fired ``n`` more slots."""
        before = sum(fired(rabbit).values())
        wait_until(lambda: sum(fired(rabbit).values()) >= before + n,
                   f"{n} more slots fired", timeout=20)

    for round_ in range(2):
        fires_more(2)
        held = wait_until(lambda: holders(daemons), "a lease holder", timeout=20)
        held[0].kill()
        wait_until(lambda: holders(daemons), "the lease to move", timeout=20)
        if round_ == 0:
            held[0].start()  # back as a standby (the last kill needs no more)
    fires_more(2)
    live = next(d for d in daemons if d.proc is not None and d.proc.poll() is None)
    status = live.admin("GET", "/admin/status").json()["sources"]
    assert status["tick"]["runs"] == "one-instance"
    assert datetime.fromisoformat(status["tick"]["next_fire"]).strftime("%H:%M") == "03:00"
    out = esb(live, "status").stdout
    assert "NEXT FIRE" in out, out
    assert "T03:00:00+01:00" in out or "T03:00:00+02:00" in out, out
    for d in daemons:
        d.stop()
    slots = fired(rabbit)
    assert slots and all(n == 1 for n in slots.values()), \
        {s: n for s, n in slots.items() if n > 1}
    times = sorted(datetime.fromisoformat(s).timestamp() for s in slots)
    gaps = [round((b - a) / INTERVAL, 3) for a, b in itertools.pairwise(times)]
    # one sequence of slots: every gap a whole number of intervals (a second instance firing
    # on its own would interleave slots off that grid)
    assert all(abs(g - round(g)) < 0.01 and g >= 1 for g in gaps), gaps
    with Connection(rabbit.url) as conn:
        for source in ("crm", "tick"):
            conn.default_channel.queue_delete(rabbit.topology().state_queue(source))
