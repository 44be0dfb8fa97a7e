"""The backend: everything that depends on which bus the configuration names, chosen once.

=================  ==============================  =====================================
service            embedded (one process)          RabbitMQ (``bus.url: amqp://…``)
=================  ==============================  =====================================
bus                :class:`EmbeddedBus`            :class:`RabbitBus` (quorum/classic)
route store        a file in ``bus.state_dir``     the ``<prefix>.routes`` stream
trace              in memory (this process)        the ``<prefix>.trace`` stream
presence           this instance only              heartbeats on the broker
idempotency log    none (one process remembers)    the ``<prefix>.idempotency`` stream
leases & state     a lock file and files           broker leases and state documents
=================  ==============================  =====================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from esb.bus.broker.base import Bus
from esb.bus.broker.embedded import EmbeddedBus
from esb.bus.config.model import Config
from esb.bus.routing.store import RouteStore
from esb.bus.runtime.idempotency_log import IdempotencyLog, Record
from esb.bus.runtime.presence import Presence
from esb.bus.runtime.singleton import Leases
from esb.bus.runtime.trace import MemoryTrace, TraceRecorder


@dataclass
class Backend:
    """The bus and the services that share its kind (see the module's table)."""

    bus: Bus
    routes: RouteStore
    trace: TraceRecorder
    presence: Presence
    leases: Leases
    idempotency_log: IdempotencyLog | None


def open_backend(cfg: Config, instance: str, *, snapshot: Callable[[], dict[str, Any]],
                 learn: Record) -> Backend:
    """The backend ``cfg.bus`` names. ``snapshot`` feeds this instance's presence heartbeat;
    ``learn`` receives the idempotency keys other instances record. Nothing connects yet."""
    bus = cfg.bus
    if bus.embedded:
        from esb.bus.routing.store_embedded import FileRouteStore
        from esb.bus.runtime.local_leases import LocalLeases

        state = cfg.resolve(bus.state_dir)
        return Backend(EmbeddedBus(), FileRouteStore(state), MemoryTrace(instance),
                       Presence(None, bus.prefix, instance, snapshot),
                       LocalLeases(state, bus.lease_retry), None)
    from esb.bus.broker.leases import BrokerLeases
    from esb.bus.broker.rabbitmq import RabbitBus
    from esb.bus.broker.topology import Topology
    from esb.bus.routing.store_rabbitmq import RabbitRouteStore
    from esb.bus.runtime.trace_rabbitmq import StreamTrace

    url = bus.url
    return Backend(
        RabbitBus(url, Topology(bus.prefix, bus.queue_type or "classic"),
                  heartbeat=bus.heartbeat, name=f"esb {instance}",
                  confirm_timeout=bus.confirm_timeout),
        RabbitRouteStore(url, bus.prefix, heartbeat=bus.heartbeat,
                         name=f"esb routes {instance}"),
        StreamTrace(url, bus.prefix, instance),
        Presence(url, bus.prefix, instance, snapshot),
        BrokerLeases(url, bus.prefix, instance, heartbeat=bus.lease_heartbeat,
                     retry=bus.lease_retry, queue_type=bus.queue_type or "classic"),
        IdempotencyLog(url, bus.prefix, instance, bus.idempotency_window, learn,
                       claim_ttl=bus.idempotency_claim_ttl, max_keys=bus.idempotency_max_keys,
                       confirm_timeout=bus.confirm_timeout))
