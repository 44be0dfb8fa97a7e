"""Prometheus metrics of one daemon, in a registry of its own (no process-global state).

With ``esb run --workers N`` each worker process records into prometheus_client's
multiprocess files (one directory per supervisor run, named by ``PROMETHEUS_MULTIPROC_DIR``,
which must be set before prometheus_client is first imported: the supervisor puts it in the
worker's environment) and every worker's ``/metrics`` renders the whole daemon through
``MultiProcessCollector``: counters and histograms are summed over every worker that ever ran
in this supervisor's lifetime, gauges are combined by their ``multiprocess_mode`` (ignored in a
single process):

* ``esb_in_flight`` — ``livesum``: deliveries in progress in the live workers;
* ``esb_bus_connected`` — ``livemin``: 1 only when every live worker has the bus (a worker
  without it refuses its share of requests, so the daemon is degraded), the same unlabelled
  series as one process, so alerts stay as they are. It follows the connection both ways (0
  while the bus is lost, 1 again once reconnected): read when scraped, see :meth:`Metrics.watch`;
* ``esb_route_version`` — ``livemax``: the newest route set any live worker runs. Versions only
  grow (a rollback is a new version) and every worker installs each one from the route stream
  within moments, so this is the version in force.

The hot path's counters and histograms are written to the shared files in batches, every
:data:`FLUSH_INTERVAL` (:class:`_Tally`), ``esb_delivered`` excepted.
"""

from __future__ import annotations

import asyncio
import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Upper bounds of :meth:`Metrics.latency_counts` (the histogram's, plus +Inf).
LATENCY_BOUNDS: tuple[float, ...] = (*_LATENCY_BUCKETS, float("inf"))

#: How often a worker copies its watched gauges into the shared files (multiprocess only).
SAMPLE_INTERVAL = 1.0
#: How long a worker keeps the hot path's counter and histogram updates before writing them
#: to the shared files (multiprocess only, :class:`_Tally`): a scrape answered by another
#: worker sees them at most this late, one answered by this worker sees every one.
FLUSH_INTERVAL = 0.05


class Metrics:
    """``multiprocess_dir``: prometheus_client's multiprocess directory when this daemon is one
    of several worker processes; None (one process) keeps everything in this registry."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._readers: list[tuple[Gauge, Callable[[], float]]] = []
        self._children: dict[tuple[object, ...], Any] = {}
        #: Tallies with updates not written yet, and the timer that writes them.
        self._pending: list[_Tally] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._thread = threading.get_ident()
        r = self.registry = CollectorRegistry()
        self.received = Counter("esb_received", "Envelopes accepted from sources",
                                ["source"], registry=r)
        self.rejected = Counter("esb_rejected", "Inbound requests refused (bad input, bus down)",
                                ["source", "reason"], registry=r)
        self.routed = Counter("esb_routed", "Envelopes routed to a destination",
                              ["route", "destination"], registry=r)
        self.unroutable = Counter("esb_unroutable", "Envelopes that matched no route",
                                  ["source"], registry=r)
        self.delivered = Counter("esb_delivered", "Deliveries accepted by the destination",
                                 ["destination"], registry=r)
        self.failed = Counter("esb_failed", "Delivery attempts that failed",
                              ["destination", "kind"], registry=r)
        self.retried = Counter("esb_retried", "Deliveries scheduled for a retry",
                               ["destination"], registry=r)
        #: Every dead letter, counted where it is made: a delivery that failed for good, and
        #: a transform step at ingress or on replay (destination "" when a route's own steps
        #: failed, before it had one).
        self.dead_lettered = Counter("esb_dead_lettered", "Envelopes moved to the DLQ",
                                     ["destination"], registry=r)
        #: Transform steps that failed: ``kind`` permanent (dead-lettered) or transient (the
        #: sender was told to retry); ``destination`` "" for a route's own steps.
        self.transform_failed = Counter(
            "esb_transform_failed", "Transform steps that failed",
            ["route", "destination", "step", "kind"], registry=r)
        self.delivery_latency = Histogram(
            "esb_delivery_seconds", "Outbound call latency", ["destination"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.end_to_end = Histogram(
            "esb_end_to_end_seconds", "Acceptance to destination acceptance", ["destination"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.requests = Counter("esb_requests", "Request/reply calls answered, by outcome (ok, "
                                "timeout, not-found, backend, unavailable, transform ...)",
                                ["route", "outcome"], registry=r)
        self.request_latency = Histogram(
            "esb_request_seconds", "Request/reply: acceptance to the caller's answer",
            ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.cache = Counter("esb_reply_cache", "Request/reply and enrichment answers looked "
                             "up in the response cache, by outcome (hit, miss)",
                             ["route", "outcome"], registry=r)
        self.waiting = Gauge("esb_waiting_callers", "Request/reply callers waiting for a reply",
                             registry=r, multiprocess_mode="livesum")
        self.in_flight = Gauge("esb_in_flight", "Deliveries in progress", ["destination"],
                               registry=r, multiprocess_mode="livesum")
        self.bus_connected = Gauge("esb_bus_connected", "1 when the bus is connected",
                                   registry=r, multiprocess_mode="livemin")
        self.route_version = Gauge("esb_route_version", "Route set version in use",
                                   registry=r, multiprocess_mode="livemax")

    @property
    def multiprocess(self) -> bool:
        return self.multiprocess_dir is not None

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: ``labels()`` locks and hashes on every
        call, and the hot path counts every message. In multiprocess mode a counter's or a
        histogram's child comes as a :class:`_Tally` (updates written every
        :data:`FLUSH_INTERVAL`) — except ``esb_delivered``'s: a delivery is counted before
        its ack, so the count of a worker killed right after holds every delivery the broker
        will not give to another worker (which counts it again)."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*labels)
            if self.multiprocess and isinstance(metric, Counter | Histogram) \
                    and metric is not self.delivered:
                found = _Tally(self, found)
            self._children[key] = found
        return found

    def _dirty(self, tally: _Tally) -> None:
        self._pending.append(tally)
        if self._flush_at is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to write them later: now
                self.flush()
                return
            self._flush_at = loop.call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Write every tally's pending updates to the shared files (multiprocess mode): run
        :data:`FLUSH_INTERVAL` after the first of them, before every render, and at a stop."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        pending, self._pending = self._pending, []
        for tally in pending:
            tally.write()

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Report ``read()`` as ``gauge`` (an unlabelled gauge or one gauge child), read when
        scraped: the hot path does not update it, and it cannot go stale.

        Multiprocess mode ignores ``set_function`` (the value must be in the shared file), so
        there ``read()`` is copied into the gauge by :meth:`sample`: every
        :data:`SAMPLE_INTERVAL` by :meth:`keep_sampling` and at the start of every render."""
        if self.multiprocess:
            self._readers.append((gauge, read))  # not read yet: may not be ready
        else:
            gauge.set_function(read)

    def sample(self) -> None:
        """Copy every watched value into its gauge (multiprocess mode)."""
        for gauge, read in self._readers:
            gauge.set(read())

    async def keep_sampling(self, interval: float = SAMPLE_INTERVAL) -> None:
        """Run :meth:`sample` every ``interval`` until cancelled, so a scrape answered by
        another worker sees this one's values at most ``interval`` old."""
        while True:
            self.sample()
            await asyncio.sleep(interval)

    def latency_counts(self) -> dict[str, list[int]]:
        """Per destination: this process's cumulative delivery-call latency histogram (one
        count per :data:`LATENCY_BOUNDS` entry), for rates and percentiles over a window
        (:func:`quantile` of the difference of two readings)."""
        self.flush()
        out: dict[str, list[int]] = {}
        for metric in self.delivery_latency.collect():
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    out.setdefault(sample.labels["destination"], []).append(int(sample.value))
        return {d: c for d, c in out.items() if len(c) == len(LATENCY_BOUNDS)}

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        self.flush()
        self.sample()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.multiprocess_dir)
        return generate_latest(registry)


class _Tally:
    """A counter's or histogram's child (multiprocess mode) whose updates add up in the
    process until :meth:`Metrics.flush` writes them: each write to prometheus_client's
    shared file takes a lock, checks for a fork and packs into the mmap (about ten such
    writes per request/reply call before). The counts written are the same, in one write per
    series per interval; a worker killed (SIGKILL) loses at most its last interval's updates.
    Updated from the event loop's thread; from any other thread an update is written at
    once, as before."""

    __slots__ = ("_amount", "_bounds", "_buckets", "_child", "_counts", "_dirty", "_owner",
                 "_sum")

    def __init__(self, owner: Metrics, child: Any) -> None:
        self._owner, self._child = owner, child
        self._dirty = False
        self._amount = self._sum = 0.0
        #: A histogram's upper bounds and its per-bucket values (prometheus_client counts each
        #: observation in the first bucket whose bound is >= it, cumulated only when read).
        self._bounds: list[float] = list(getattr(child, "_upper_bounds", ()))
        self._buckets: list[Any] = list(getattr(child, "_buckets", ()))
        self._counts = [0] * len(self._bounds)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        if threading.get_ident() != self._owner._thread:
            self._child.inc(amount)
            return
        self._amount += amount
        if not self._dirty:
            self._dirty = True
            self._owner._dirty(self)

    def observe(self, amount: float) -> None:
        if threading.get_ident() != self._owner._thread or not self._bounds \
                or amount != amount:  # (NaN: counted in no bucket, as prometheus_client does)
            self._child.observe(amount)
            return
        self._sum += amount
        self._counts[bisect_left(self._bounds, amount)] += 1
        if not self._dirty:
            self._dirty = True
            self._owner._dirty(self)

    def write(self) -> None:
        self._dirty = False
        if self._amount:
            amount, self._amount = self._amount, 0.0
            self._child.inc(amount)
        if any(self._counts):
            self._child._sum.inc(self._sum)
            for bucket, count in zip(self._buckets, self._counts, strict=True):
                if count:
                    bucket.inc(count)
            self._sum = 0.0
            self._counts = [0] * len(self._bounds)


def quantile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in seconds of a window of the latency histogram (cumulative
    counts per :data:`LATENCY_BOUNDS` bound), interpolated within its bucket as Prometheus'
    ``histogram_quantile`` does; ``None`` when the window is empty. Beyond the last finite
    bound, the answer is that bound."""
    if len(counts) != len(LATENCY_BOUNDS) or not counts[-1]:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0
    for bound, count in zip(LATENCY_BOUNDS, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower
