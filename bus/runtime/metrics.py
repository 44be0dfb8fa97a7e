"""Prometheus metrics of one daemon, in a registry of its own (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
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
        self.dead_lettered = Counter("esb_dead_lettered", "Envelopes moved to the DLQ",
                                     ["destination"], registry=r)
        self.delivery_latency = Histogram(
            "esb_delivery_seconds", "Outbound call latency", ["destination"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.end_to_end = Histogram(
            "esb_end_to_end_seconds", "Acceptance to destination acceptance", ["destination"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("esb_in_flight", "Deliveries in progress", ["destination"],
                               registry=r)
        self.bus_connected = Gauge("esb_bus_connected", "1 when the bus is connected",
                                   registry=r)
        self.route_version = Gauge("esb_route_version", "Route set version in use",
                                   registry=r)

    def watch_in_flight(self, destination: str, read: Callable[[], float]) -> None:
        """Report ``read()`` as the destination's in-flight gauge (read when scraped, so the
        hot path does not update it twice per message)."""
        self.in_flight.labels(destination).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
