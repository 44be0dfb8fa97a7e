"""The ``Bus`` seam: what the runtime needs from a message broker, and nothing more.

Addresses are logical: ``dest.<name>`` (one queue per destination: the bulkhead),
``unroutable``, ``dlq``, and ``reply.<id>`` (one per instance: replies to its requests).
Implementations map them onto their own topology.

Guarantees every implementation keeps:

* :meth:`Bus.publish` returns only once the broker has taken responsibility for the envelope
  (RabbitMQ: publisher confirm of a ``mandatory`` publish that reached a queue); otherwise it
  raises :class:`~esb.bus.errors.BusUnavailable` or :class:`~esb.bus.errors.PublishRejected`.
* A consumed :class:`Message` stays owned by the bus until the handler calls
  :meth:`Message.ack`; if the process dies first, the message is delivered again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from esb.bus.envelope import Envelope

UNROUTABLE = "unroutable"
DEAD_LETTER = "dlq"

#: Retry delay tiers in seconds (RabbitMQ: one TTL queue each, shared by all destinations).
#: A delay is made of several tiers when no single one fits (see esb.bus.broker.rabbitmq).
RETRY_TIERS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600, 1200,
                                  1800, 3600)


def destination_address(name: str, partition: int | None = None) -> str:
    """A destination's queue; ordered destinations have one queue per key partition."""
    return f"dest.{name}" if partition is None else f"dest.{name}.p{partition}"


def destination_addresses(name: str, partitions: int = 0) -> list[str]:
    if not partitions:
        return [destination_address(name)]
    return [destination_address(name, p) for p in range(partitions)]


def retry_tier(delay: float) -> float:
    """The largest tier that does not overshoot ``delay`` (the smallest one below it): the
    rest of the delay is waited in further tiers."""
    fitting = [tier for tier in RETRY_TIERS if tier <= delay + 1e-9]
    return fitting[-1] if fitting else RETRY_TIERS[0]


class Message(Protocol):
    """One consumed envelope, owned by the bus until acked."""

    envelope: Envelope
    redelivered: bool

    @property
    def alive(self) -> bool:
        """Whether it can still be settled: false once the connection it came on is gone (the
        broker has queued it again, so it must not be delivered from here)."""

    def ack(self) -> None:
        """The destination accepted it (or it was moved elsewhere with a confirm)."""

    def requeue(self) -> None:
        """Give it back untouched (used while draining)."""


Handler = Callable[[Message], Awaitable[None]]
OnReply = Callable[[Envelope], None]
#: Called with the broker's reason when a reply it took comes back undelivered.
OnReturned = Callable[[str], None]
Select = Callable[[Envelope], bool]
Progress = Callable[[int, int], None]


class Bus(Protocol):
    """A broker as the runtime sees it."""

    #: Whether accepted envelopes survive a restart of this process.
    durable: bool

    @property
    def connected(self) -> bool: ...

    async def start(self, destinations: Sequence[str],
                    partitions: Mapping[str, int] | None = None) -> None:
        """Connect and declare the topology for these destinations (idempotent).

        ``partitions`` names the ordered destinations: one single-active-consumer queue per
        key partition instead of one shared queue."""

    async def publish(self, address: str, envelope: Envelope) -> None:
        """Publish and wait for the broker's confirm."""

    async def publish_atomically(self, publishes: Sequence[tuple[str, Envelope]],
                                 records: Sequence[tuple[str, bytes]] = ()) -> None:
        """Publish every envelope (and every raw ``records`` body, to the named queue of the
        bus's own state: the idempotency stream) all together or none of them: a failure or
        a crash before the broker took them leaves none published. On quorum queues (where
        a transaction is not safe when a queue's leader moves) it is :meth:`publish_in_order`
        instead."""

    async def publish_in_order(self, publishes: Sequence[tuple[str, Envelope]],
                               records: Sequence[tuple[str, bytes]] = ()) -> None:
        """Publish every envelope, each confirmed, then every ``records`` body: not atomic,
        but a failure may leave some envelopes published, never a record without them (a
        repeat is dropped by its key at the destination)."""

    async def publish_delayed(self, address: str, envelope: Envelope, delay: float) -> float:
        """Publish so that it reaches ``address`` after about ``delay`` s; returns the delay
        actually used. Durable like :meth:`publish`."""

    async def consume(self, address: str, handler: Handler, prefetch: int) -> None:
        """Deliver messages of ``address`` to ``handler`` until :meth:`stop_consuming`,
        resuming by itself after a reconnect."""

    def fail_pending(self, reason: str) -> None:
        """Fail every publish still waiting for the broker with ``BusUnavailable(reason)``
        (a stop that cannot wait longer)."""

    async def stop_consuming(self) -> None:
        """Stop taking new deliveries (messages already handed out stay owned)."""

    async def depths(self) -> dict[str, int]:
        """Ready messages per address."""

    async def browse(self, address: str, limit: int) -> list[Envelope]:
        """Up to ``limit`` envelopes waiting at ``address``, left where they are."""

    async def take(self, address: str, select: Select,
                   handle: Callable[[Envelope], Awaitable[None]], limit: int | None = None,
                   progress: Progress | None = None) -> tuple[int, int]:
        """One pass over ``address``: ``handle`` each selected envelope, then remove it (only
        after ``handle`` returned). Returns (handled, left in the queue)."""

    async def purge(self, address: str) -> int:
        """Drop everything waiting at ``address``; returns how many."""

    async def open_replies(self, on_reply: OnReply) -> str:
        """Start taking the replies to this instance's requests (request/reply, see
        :mod:`esb.bus.reply`); returns the address a request carries in ``esbreplyto``.
        Replies are transient: a reply in flight when this instance's connection drops is lost
        (its caller times out)."""

    async def reply(self, address: str, envelope: Envelope,
                    returned: OnReturned | None = None) -> None:
        """Send a reply to ``address``, at most once and without waiting for the broker to
        take it (a reply that is lost ends as its caller's timeout, as one that comes too late
        does). When the bus knows at once that nothing waits there any more (the caller's
        instance is gone), it raises :class:`~esb.bus.errors.PublishRejected`; when it learns
        it later, it logs it and calls ``returned`` with the reason."""

    async def close(self) -> None: ...
