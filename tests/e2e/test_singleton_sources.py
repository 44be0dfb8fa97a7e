"""Sources that run once across the fleet, through three daemons on RabbitMQ: the lease holder
of a polling source is killed (-9) again and again while items keep arriving; every item is
accepted exactly once, the lease moves within the documented bound and the poll cursor moves
with it (the next holder continues from it, on the broker)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import orjson
from esbtest.asgi import serve_in_thread
from esbtest.daemon import start_fleet
from esbtest.waiting import wait_until
from kombu import Connection
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: Documented bound for a killed holder (docs/reliability.md): lease_retry + one round trip;
#: asserted with the partition bound (2 x lease_heartbeat + lease_retry) plus the time the
#: test takes to ask three daemons, since the machine is shared.
HEARTBEAT, RETRY = 2, 0.2
MOVE_BOUND = 2 * HEARTBEAT + RETRY + 2.0


class ItemsApi:
    """``GET /items?since=T``: items with ``at >= T``, oldest first, at most 5 a page."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        #: (time, since) of every request
        self.requests: list[tuple[float, str | None]] = []

    def add(self, n: int) -> None:
        with self.lock:
            self.items.append({"id": f"item-{n}", "at": n})

    def app(self) -> Starlette:
        async def items(request: Request) -> Response:
            since = request.query_params.get("since")
            self.requests.append((time.monotonic(), since))
            with self.lock:
                page = [i for i in self.items if i["at"] >= int(since or 0)][:5]
            return JSONResponse({"items": page})

        return Starlette(routes=[Route("/items", items)])


def holders(daemons: list[Any]) -> list[Any]:
    out = []
    for d in daemons:
        if d.proc is None or d.proc.poll() is not None:
            continue
        try:
            st = d.admin("GET", "/admin/status").json()
        except Exception:
            continue
        if st["sources"]["crm"].get("lease") == "held":
            out.append(d)
    return out


def unroutable_ids(url: str, queue: str) -> Counter[str]:
    """Envelope ids in the unroutable queue (every item goes there: no route matches)."""
    seen: Counter[str] = Counter()
    with Connection(url) as conn:
        channel = conn.channel()
        while True:
            message = channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            seen[orjson.loads(message.body)["id"]] += 1
        channel.close()  # un-acked: back in the queue, for the clean-up to delete
    return seen


def test_a_polling_source_runs_once_and_moves_when_its_holder_is_killed(
        rabbit: Any, daemon_factory: Any) -> None:
    api = ItemsApi()

    def cursor() -> int:
        """The furthest the holders' polls have asked from (-1 before any item was taken)."""
        return max((int(since) for _, since in list(api.requests) if since is not None),
                   default=-1)

    with serve_in_thread(api.app()) as base:
        cfg = {
            # A holder killed while it held an item's key leaves the key claimed: the next
            # holder gets past that item once the claim lapses (30 s by default; 2 s here,
            # still far longer than a live holder takes to publish an item).
            "bus": rabbit.bus(lease_heartbeat=HEARTBEAT, lease_retry=f"{int(RETRY * 1000)}ms",
                              idempotency_claim_ttl="2s"),
            "sources": {"crm": {"adapter": "rest", "poll": {
                "url": f"{base}/items", "interval": "100ms", "items": "items", "id": "id",
                "cursor": {"param": "since", "from": "at"}, "type": "crm.item"}}},
        }
        daemons = start_fleet([daemon_factory(cfg, name=n) for n in ("a", "b", "c")])
        kills_done = threading.Event()
        fed: list[int] = []

        def feed() -> None:
            # New items all through the kills, and a few after the last one (the last
            # holder takes them too).
            n, after = 0, 5
            while after:
                if kills_done.is_set():
                    after -= 1
                api.add(n)
                fed.append(n)
                n += 1
                time.sleep(0.15)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        moves: list[float] = []
        first_kill: float | None = None
        for round_ in range(3):
            # some items flow through the holder: its cursor moves on by two
            mark = cursor()
            wait_until(lambda mark=mark: cursor() >= mark + 2, "items taken by a holder",
                       timeout=30)
            held = wait_until(lambda: holders(daemons), "a lease holder", timeout=20)
            assert len(held) == 1, f"{len(held)} instances hold the lease"
            victim = held[0]
            killed_at = time.monotonic()
            first_kill = first_kill or killed_at
            victim.kill()
            wait_until(lambda: holders(daemons), "the lease to move", timeout=30)
            moves.append(time.monotonic() - killed_at)
            live = [d for d in daemons if d.proc is not None and d.proc.poll() is None]
            if len(live) < 2 and round_ < 2:
                # back as a standby, for the next kill to have somewhere to move the lease
                # (one restart is enough for it: each costs a daemon's start-up)
                victim.start()
        kills_done.set()
        feeder.join(30)
        total = len(fed)
        queue = rabbit.topology().queue("unroutable")
        wait_until(lambda: len(unroutable_ids(rabbit.url, queue)) >= total,
                   "every item accepted", timeout=30)
        # A late duplicate would come from a poll: let the holder poll twice more from the end.
        polled = len(api.requests)
        wait_until(lambda: sum(1 for _, since in api.requests[polled:]
                               if since is not None and int(since) >= total - 1) >= 2,
                   "two more polls from the last item", timeout=20)
        counts = unroutable_ids(rabbit.url, queue)
        assert len(holders(daemons)) == 1
    expected = {f"item-{n}@{n}" for n in range(total)}  # the key carries the cursor
    assert set(counts) == expected
    twice = {k: c for k, c in counts.items() if c != 1}
    assert not twice, f"items accepted more than once: {twice}"
    print(f"{total} items; lease moves after kill -9: {[round(m, 2) for m in moves]} s")
    assert all(m <= MOVE_BOUND for m in moves), f"lease moves took {moves} s"
    # The cursor lives on the broker: every holder after the first kill continued from it.
    assert first_kill is not None
    assert all(since is not None for at, since in api.requests if at > first_kill)
    with Connection(rabbit.url) as conn:
        conn.default_channel.queue_delete(rabbit.topology().state_queue("crm"))
