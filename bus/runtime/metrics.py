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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Upper bounds of :meth:`Metrics.latency_counts` (the histogram's, plus +Inf).
LATENCY_BOUNDS: tuple[float, ...] = (*_LATENCY_BUCKETS, float("inf"))

#: How often a worker copies its watched gauges into the shared files (multiprocess only).
SAMPLE_INTERVAL = 1.0


class Metrics:
    """``multiprocess_dir``: prometheus_client's multiprocess directory when this daemon is one
    of several worker processes; None (one process) keeps everything in this registry."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._readers: list[tuple[Gauge, Callable[[], float]]] = []
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

    def watch_in_flight(self, destination: str, read: Callable[[], float]) -> None:
        """Report ``read()`` as the destination's in-flight gauge."""
        self.watch(self.in_flight.labels(destination), read)

    def watch_bus(self, connected: Callable[[], bool]) -> None:
        """Report ``connected()`` (1 or 0) as ``esb_bus_connected``."""
        self.watch(self.bus_connected, lambda: 1.0 if connected() else 0.0)

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

        self.sample()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.multiprocess_dir)
        return generate_latest(registry)


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
