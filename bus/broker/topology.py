"""RabbitMQ topology: names, arguments, and declaring them with kombu.

kombu does the low-rate, blocking work where its entity API and connection retry policy shine
(declaring, passive inspection); pika does the hot path (see ``rabbitmq.py`` and
docs/architecture.md for the measurements behind the split).

::

    <prefix>.deliver (direct) ──dest.<name>──▶ <prefix>.dest.<name>   one per destination
                              ──unroutable──▶ <prefix>.unroutable
                              ──dlq─────────▶ <prefix>.dlq
    <prefix>.retry.<ms> (fanout) ─▶ <prefix>.retry.<ms>  (x-message-ttl=<ms>,
                                     x-dead-letter-exchange=<prefix>.deliver: back to the
                                     destination queue with the original routing key)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from amqp.exceptions import PreconditionFailed
from kombu import Exchange, Queue

from esb.bus.broker.base import DEAD_LETTER, RETRY_TIERS, UNROUTABLE, destination_addresses
from esb.bus.broker.connection import kombu_connection

log = structlog.get_logger("esb.bus.topology")

#: Redeliveries of one message (crashed consumers) before a quorum queue dead-letters it.
QUORUM_DELIVERY_LIMIT = 1000

#: Deliveries (browses included) before a quorum DLQ or unroutable queue would drop a message:
#: far beyond any real use, and explicit so it is no broker default.
HOLDING_DELIVERY_LIMIT = 1_000_000_000


@dataclass(frozen=True)
class Topology:
    prefix: str
    queue_type: str = "classic"

    @property
    def deliver_exchange(self) -> str:
        return f"{self.prefix}.deliver"

    def queue(self, address: str) -> str:
        return f"{self.prefix}.{address}"

    # Shared state on the bus (each owned by its module; named here so one place knows all).
    @property
    def routes_stream(self) -> str:
        return f"{self.prefix}.routes"

    @property
    def idempotency_stream(self) -> str:
        return f"{self.prefix}.idempotency"

    @property
    def trace_stream(self) -> str:
        return f"{self.prefix}.trace"

    @property
    def presence_exchange(self) -> str:
        return f"{self.prefix}.presence"

    def lease_queue(self, source: str) -> str:
        """The exclusive queue whose declarer runs the ``one-instance`` source (``leases.py``)."""
        return f"{self.prefix}.lease.{source}"

    def state_queue(self, source: str) -> str:
        """The one-message queue holding a source's state document (``leases.py``)."""
        return f"{self.prefix}.state.{source}"

    def retry_exchange(self, tier: float) -> str:
        return f"{self.prefix}.retry.{int(tier * 1000)}"

    def queue_arguments(self) -> dict[str, Any]:
        # Declared explicitly so behaviour does not depend on the broker's defaults.
        return {"x-queue-type": self.queue_type}

    def destination_arguments(self) -> dict[str, Any]:
        """Destination queues. On quorum queues RabbitMQ 4 defaults to a delivery limit of 20
        and then drops the message; esb sets the limit itself and, should a message ever reach
        it (a poison message crashing every consumer), dead-letters it at least once to the
        DLQ instead of dropping it."""
        args = self.queue_arguments()
        if self.queue_type == "quorum":
            args.update({"x-delivery-limit": QUORUM_DELIVERY_LIMIT,
                         "x-dead-letter-exchange": self.deliver_exchange,
                         "x-dead-letter-routing-key": DEAD_LETTER,
                         "x-dead-letter-strategy": "at-least-once",
                         "x-overflow": "reject-publish"})
        return args

    def holding_arguments(self) -> dict[str, Any]:
        """The DLQ and the unroutable queue. Browsing them (``esb dlq list``) takes messages
        and gives them back, which a quorum queue counts as a delivery: without a limit of its
        own, RabbitMQ 4's default of 20 would drop a dead letter after 20 browses."""
        args = self.queue_arguments()
        if self.queue_type == "quorum":
            args["x-delivery-limit"] = HOLDING_DELIVERY_LIMIT
        return args

    def retry_arguments(self, tier: float) -> dict[str, Any]:
        """A retry tier: a TTL queue that dead-letters back into the delivery exchange. On
        quorum queues that hand-over is at-least-once (it needs ``reject-publish`` overflow);
        classic queues only have the broker's at-most-once dead-lettering."""
        args = {**self.queue_arguments(), "x-message-ttl": int(tier * 1000),
                "x-dead-letter-exchange": self.deliver_exchange}
        if self.queue_type == "quorum":
            args.update({"x-dead-letter-strategy": "at-least-once",
                         "x-overflow": "reject-publish"})
        return args

    def entities(self, destinations: Sequence[str],
                 partitions: Mapping[str, int] | None = None) -> list[Queue]:
        deliver = Exchange(self.deliver_exchange, type="direct", durable=True)
        parts = partitions or {}
        queues = [Queue(self.queue(a), deliver, routing_key=a, durable=True,
                        queue_arguments=self.holding_arguments())
                  for a in (UNROUTABLE, DEAD_LETTER)]
        for d in destinations:
            args = self.destination_arguments()
            if parts.get(d):
                # One consumer at a time per partition, across every instance: key order.
                args["x-single-active-consumer"] = True
            queues += [Queue(self.queue(a), deliver, routing_key=a, durable=True,
                             queue_arguments=args)
                       for a in destination_addresses(d, parts.get(d, 0))]
        for tier in RETRY_TIERS:
            name = self.retry_exchange(tier)
            queues.append(Queue(
                name, Exchange(name, type="fanout", durable=True), durable=True,
                queue_arguments=self.retry_arguments(tier)))
        return queues

    def declare(self, url: str, destinations: Sequence[str],
                partitions: Mapping[str, int] | None = None, *, timeout: float = 10) -> None:
        """Declare every exchange, queue and binding (idempotent; blocking)."""
        with kombu_connection(url, timeout) as conn:
            conn.ensure_connection(max_retries=3, timeout=timeout)
            channel = conn.default_channel
            for queue in self.entities(destinations, partitions):
                try:
                    queue.bind(channel).declare()
                except PreconditionFailed as exc:
                    # Declared earlier with other arguments (by an older esb): RabbitMQ will
                    # not change them. Keep the queue and its binding, say how to migrate.
                    log.warning("queue exists with other arguments; kept as it is",
                                queue=queue.name, error=str(exc),
                                fix="drain it and delete it; esb declares it again")
                    channel = conn.channel()
                    queue.exchange.bind(channel).declare()
                    channel.queue_bind(queue.name, queue.exchange.name, queue.routing_key)

    def depths(self, url: str, addresses: Sequence[str], *, timeout: float = 5) -> dict[str, int]:
        """Ready messages per address, by passive declare (blocking); ``retrying`` sums the
        retry tiers (messages waiting out a backoff, for every destination)."""
        out: dict[str, int] = {}
        with kombu_connection(url, timeout) as conn:
            channel = conn.default_channel
            for address in addresses:
                ok = channel.queue_declare(queue=self.queue(address), passive=True)
                out[address] = ok.message_count
            out["retrying"] = sum(
                channel.queue_declare(queue=self.retry_exchange(tier), passive=True).message_count
                for tier in RETRY_TIERS)
        return out

    def delete(self, url: str, destinations: Sequence[str],
               partitions: Mapping[str, int] | None = None) -> None:
        """Remove everything declared for this prefix (test clean-up)."""
        with kombu_connection(url) as conn:
            channel = conn.default_channel
            for queue in self.entities(destinations, partitions):
                channel.queue_delete(queue.name)
                if queue.exchange.name != self.deliver_exchange:
                    channel.exchange_delete(queue.exchange.name)
            channel.exchange_delete(self.deliver_exchange)
            for stream in (self.routes_stream, self.idempotency_stream, self.trace_stream):
                channel.queue_delete(stream)
            channel.exchange_delete(self.presence_exchange)
