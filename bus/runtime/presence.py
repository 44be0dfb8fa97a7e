"""Instance presence: every daemon knows every live daemon on the same bus, for ``esb status``.

Each instance publishes a heartbeat every ``interval`` (5 s) on the fanout exchange
``<prefix>.presence`` and reads everyone's through its own exclusive, auto-delete, server-named
queue. An instance silent for more than ``expiry`` (15 s: three missed heartbeats) is dropped;
one that stops cleanly says goodbye and is dropped at once. A newcomer is answered with an
immediate heartbeat, so instances find each other in well under a second instead of waiting a
whole interval. Heartbeats are best-effort (no confirms, a per-message TTL): presence is an
operator's view, not a coordination mechanism.

A heartbeat carries what :class:`Presence` knows (instance, host, pid, started_at, sent_at)
plus whatever the ``snapshot`` callback returns — by convention::

    {"route_version": 7, "bus_connected": true, "version": "0.1.0", "state": "running",
     "destinations": {"erp": {"delivered": 1520, "failed": 3, "dead_lettered": 1,
                              "retried": 2, "in_flight": 4, "breaker": "closed",
                              "latency": [0, 3, ...]}, ...}}

Per-destination rates (``delivered_per_s``, ``failed_per_s``, ``dead_lettered_per_s``,
``retried_per_s``) and delivery latency percentiles (``p50_ms``, ``p90_ms``, ``p99_ms``, from
the ``latency`` histogram counts) are
computed by the receiver from the counter deltas between two heartbeats of the same instance
run (the sender's clock on both ends; at least ``interval * 0.8`` apart so the early answer to
a newcomer does not make them noisy). ``None`` until two heartbeats were seen.

With the embedded bus (``url=None``) there is nothing to share: :meth:`Presence.instances`
lists this instance only, with rates computed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pika
import structlog
from pika.channel import Channel

from esb.bus.broker.connection import AmqpLink
from esb.bus.broker.topology import Topology
from esb.bus.runtime.metrics import LATENCY_BOUNDS, quantile
from esb.bus.tasks import cancel_all

log = structlog.get_logger("esb.presence")

FORMAT = 1
COUNTERS = ("delivered", "failed", "dead_lettered", "retried")
#: Per destination: the delivery-call latency histogram's counts between the last two
#: heartbeats (see :data:`~esb.bus.runtime.metrics.LATENCY_BOUNDS`), and percentiles of it.
LATENCY_WINDOW = "latency_window"
PERCENTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99}


@dataclass
class _Seen:
    """What is known of one instance: its last heartbeat and the rate baseline."""

    last: dict[str, Any]
    seen: float  # local monotonic time of the last heartbeat
    base: dict[str, Any] | None = None
    rates: dict[str, dict[str, float]] = field(default_factory=dict)


class Presence:
    """Heartbeats on ``<prefix>.presence``; :meth:`instances` lists every live instance.

    ``snapshot`` is called once per heartbeat on the event loop; it must be quick and should
    not raise (if it does, the heartbeat goes out without it, with ``snapshot_error``)."""

    def __init__(self, url: str | None, prefix: str, instance: str,
                 snapshot: Callable[[], dict[str, Any]], *, interval: float = 5.0,
                 expiry: float = 15.0, heartbeat: int = 30, timeout: float = 10.0) -> None:
        self.url = url
        self.exchange = Topology(prefix).presence_exchange
        self.instance = instance
        self.snapshot = snapshot
        self.interval = interval
        self.expiry = expiry
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = datetime.now(UTC).isoformat()
        self._link: AmqpLink | None = None
        if url is not None:
            self._link = AmqpLink(url, name=f"esb presence {instance}", heartbeat=heartbeat,
                                  timeout=timeout, on_connected=self._on_connected)
        self._seen: dict[str, _Seen] = {}
        #: Handlers of other message kinds peers send (:meth:`broadcast`), by kind.
        self._listeners: dict[str, Callable[[dict[str, Any]], None]] = {}
        #: Called when an instance joins or says goodbye (:meth:`watch`).
        self._watchers: list[Callable[[], None]] = []
        self._channel: Channel | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected

    def beat_now(self) -> None:
        """Send a heartbeat now (something the others want to know soon changed, e.g. the
        route version this instance runs)."""
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Send the first heartbeat and keep sending. Raises :class:`BusUnavailable` when the
        first connection fails; a background supervisor keeps trying regardless."""
        if self._tasks:
            return
        self._closing = False
        try:
            if self._link is not None:
                await self._link.start()
        finally:
            self._tasks.append(asyncio.create_task(self._beat(), name="esb presence heartbeat"))

    async def close(self) -> None:
        """Say goodbye (so the others drop this instance at once) and disconnect."""
        if self._closing:
            return
        self._closing = True
        await cancel_all(self._tasks)
        if self.connected:
            self._publish({"v": FORMAT, "kind": "goodbye", "instance": self.instance})
        if self._link is not None:
            await self._link.close()

    # -- reading -----------------------------------------------------------------------------

    def instances(self) -> list[dict[str, Any]]:
        """Every live instance (this one included, first), with per-destination rates and
        ``last_seen_s`` (seconds since its last heartbeat arrived)."""
        now = time.monotonic()
        for name in [n for n, s in self._seen.items()
                     if n != self.instance and now - s.seen > self.expiry]:
            del self._seen[name]
        self._observe(self._heartbeat())  # this instance as it is now, not at its last beat
        out = []
        for name, seen in self._seen.items():
            entry = {**{k: v for k, v in seen.last.items() if k not in ("kind", "v")},
                     "self": name == self.instance,
                     # this instance's own beat is observed after ``now``: never negative
                     "last_seen_s": round(max(0.0, now - seen.seen), 3)}
            dests = entry.get("destinations")
            if isinstance(dests, dict):
                entry["destinations"] = {
                    d: {**{k: v for k, v in c.items() if k != "latency"},
                        **_rate_fields(seen.rates.get(d))} if isinstance(c, dict) else c
                    for d, c in dests.items()}
            out.append(entry)
        out.sort(key=lambda e: (not e["self"], str(e.get("instance"))))
        return out

    def running(self, destination: str) -> int:
        """Live instances (this one included) that deliver to ``destination``: the ones whose
        latest heartbeat lists it. At least 1."""
        now = time.monotonic()
        count = 0
        for name, seen in self._seen.items():
            if name != self.instance and now - seen.seen > self.expiry:
                continue
            dests = seen.last.get("destinations")
            if name == self.instance or (isinstance(dests, dict) and destination in dests):
                count += 1
        return max(1, count)

    def broadcast(self, kind: str, body: dict[str, Any]) -> None:
        """Tell every other instance now (best-effort, like a heartbeat): they hand it to the
        listener of ``kind`` (:meth:`listen`)."""
        if self.connected:
            self._publish({**body, "v": FORMAT, "kind": kind, "instance": self.instance})

    def listen(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None:
        self._listeners[kind] = handler

    def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed()`` on the loop as soon as an instance joins or says goodbye (one
        that falls silent is noticed by whoever asks next, after ``expiry``)."""
        self._watchers.append(changed)

    def _roster_changed(self) -> None:
        for changed in self._watchers:
            try:
                changed()
            except Exception as exc:  # a watcher's fault must not stop presence
                log.warning("presence: roster watcher failed", error=str(exc))

    # -- heartbeats --------------------------------------------------------------------------

    def _heartbeat(self) -> dict[str, Any]:
        hb: dict[str, Any] = {"v": FORMAT, "kind": "heartbeat", "instance": self.instance,
                              "host": self.host, "pid": self.pid,
                              "started_at": self.started_at, "sent_at": time.time()}
        try:
            snap = self.snapshot()
            if isinstance(snap, dict):
                hb.update({k: v for k, v in snap.items() if k not in hb})
        except Exception as exc:  # presence must not die with the callback
            hb["snapshot_error"] = f"{type(exc).__name__}: {exc}"
        return hb

    async def _beat(self) -> None:
        while not self._closing:
            hb = self._heartbeat()
            self._observe(hb)
            if self.connected:
                self._publish(hb)
            with contextlib.suppress(TimeoutError):
                # Not wait_for: on 3.11 it can swallow a cancel that races with the event.
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()

    def _observe(self, hb: dict[str, Any]) -> None:
        """Take in one heartbeat (our own or a peer's)."""
        name = str(hb.get("instance"))
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is None or seen.last.get("started_at") != hb.get("started_at"):
            self._seen[name] = _Seen(last=hb, seen=now, base=hb)
            return
        seen.last, seen.seen = hb, now
        base = seen.base or hb
        try:
            dt = float(hb["sent_at"]) - float(base["sent_at"])
        except (KeyError, TypeError, ValueError):
            return
        if dt < self.interval * 0.8:
            return
        seen.rates = _rates(base.get("destinations"), hb.get("destinations"), dt)
        seen.base = hb

    def _publish(self, body: dict[str, Any]) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        try:
            channel.basic_publish(
                self.exchange, "", orjson.dumps(body, default=str),
                pika.BasicProperties(content_type="application/json", delivery_mode=1,
                                     expiration=str(int(self.expiry * 1000)),
                                     type=f"esb.presence.{body.get('kind')}"))
        except Exception as exc:  # best-effort
            log.debug("presence: heartbeat not sent", error=str(exc))

    def _on_message(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        try:
            msg = orjson.loads(body)
            name = msg["instance"]
            kind = msg.get("kind")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if not isinstance(name, str) or name == self.instance:
            return
        if kind == "goodbye":
            if self._seen.pop(name, None) is not None:
                self._roster_changed()
        elif kind == "heartbeat":
            new = name not in self._seen
            self._observe(msg)
            if new:
                self._wake.set()  # answer a newcomer now rather than in `interval`
                self._roster_changed()
        elif isinstance(kind, str) and kind in self._listeners:
            try:
                self._listeners[kind](msg)
            except Exception as exc:  # a peer's odd message must not stop the others
                log.warning("presence: message not handled", kind=kind, error=str(exc))

    # -- connection --------------------------------------------------------------------------

    async def _on_connected(self, link: AmqpLink) -> None:
        """Bind a fresh exclusive queue to the exchange (on every (re)connect) and announce
        this instance at once."""
        channel = await link.channel(recover=True)  # a lost channel: reconnect whole
        await link.call(channel.exchange_declare, exchange=self.exchange,
                        exchange_type="fanout", durable=True)
        frame = await link.call(channel.queue_declare, "", exclusive=True, auto_delete=True,
                                arguments={"x-message-ttl": int(self.expiry * 1000)})
        queue = frame.method.queue
        await link.call(channel.queue_bind, queue, self.exchange)
        channel.basic_consume(queue, self._on_message, auto_ack=True)
        self._channel = channel
        if link.connects:
            log.info("presence reconnected", exchange=self.exchange)
        self._wake.set()  # announce ourselves now


def _rates(before: Any, after: Any, dt: float) -> dict[str, dict[str, Any]]:
    if not isinstance(before, dict) or not isinstance(after, dict) or dt <= 0:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for dest, now in after.items():
        then = before.get(dest)
        if not isinstance(now, dict) or not isinstance(then, dict):
            continue
        rates: dict[str, Any] = {}
        for key in COUNTERS:
            a, b = then.get(key), now.get(key)
            if isinstance(a, int | float) and isinstance(b, int | float):
                rates[key] = round(max(0.0, (b - a) / dt), 3)
        window = _latency_window(then.get("latency"), now.get("latency"))
        if window is not None:
            rates[LATENCY_WINDOW] = window
        out[dest] = rates
    return out


def _latency_window(before: Any, after: Any) -> list[int] | None:
    """The latency histogram's counts between two heartbeats (cumulative per bound)."""
    if not (isinstance(before, list) and isinstance(after, list)
            and len(before) == len(after) == len(LATENCY_BOUNDS)):
        return None
    try:
        return [max(0, int(b) - int(a)) for a, b in zip(before, after, strict=True)]
    except (TypeError, ValueError):
        return None


def percentiles(window: list[int] | None) -> dict[str, float | None]:
    """:data:`PERCENTILES` of a latency histogram window, in milliseconds (None: no calls)."""
    values = {name: quantile(window, q) if window else None for name, q in PERCENTILES.items()}
    return {name: None if v is None else round(v * 1000, 3) for name, v in values.items()}


def _rate_fields(rates: dict[str, Any] | None) -> dict[str, Any]:
    rates = rates or {}
    window = rates.get(LATENCY_WINDOW)
    return {**{f"{key}_per_s": rates.get(key) for key in COUNTERS}, LATENCY_WINDOW: window,
            **percentiles(window)}
