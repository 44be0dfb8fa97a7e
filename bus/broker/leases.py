"""What the instances of one deployment share through RabbitMQ to run a source once: leases,
and the small state documents (poll cursors, schedule times) that move with them.

**Lease = an exclusive queue.** ``<prefix>.lease.<source>`` is declared ``exclusive``: the
broker lets exactly one connection declare it, and deletes it the moment that connection
closes. An instance holds the lease while its declaration stands; the others try again every
``retry`` seconds and get ``405 RESOURCE_LOCKED`` meanwhile. The lease moves when its holder

* stops cleanly: it deletes the queue, so the next try (≤ ``retry``) takes it;
* dies (``kill -9``, OOM): the kernel closes its socket, the broker sees it at once, so the
  lease moves within ``retry`` (1 s by default) plus one round trip;
* is cut off from the broker (host down, partition): the broker closes the connection after
  missing heartbeats (about ``2 x heartbeat``: 10 s with the default 5 s), then as above. The
  holder's own heartbeat check ends its connection in the same time, and it stops the source
  — and a holder that cannot reach the broker cannot publish what it polls either.

The lease has its own connection (small heartbeat, nothing else on it), so a busy bus
connection never delays the detection.

**State = a one-message queue.** ``<prefix>.state.<source>`` is durable with
``x-max-length: 1``: a save publishes the new document (persistent, confirmed) and the broker
drops the previous one; a load takes the message and hands it straight back. It is on the
broker, so the next holder — on any host — continues from the cursor the last one saved.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pika
import structlog
from pika.channel import Channel

from esb.bus.broker.connection import AmqpLink, ChannelClosed
from esb.bus.broker.publisher import ConfirmedPublisher
from esb.bus.broker.topology import Topology
from esb.bus.errors import BusError, BusUnavailable, ConfigError

log = structlog.get_logger("esb.leases")

#: The broker's answer to declaring an exclusive queue another connection holds.
RESOURCE_LOCKED = 405


class BrokerLeases:
    """One connection for every lease and state document of this instance."""

    def __init__(self, url: str, prefix: str, instance: str, *, heartbeat: int = 5,
                 retry: float = 1.0, queue_type: str = "classic") -> None:
        self.topology = Topology(prefix, queue_type)
        self.instance = instance
        self.retry = retry
        self.link = AmqpLink(url, name=f"esb leases {instance}", heartbeat=heartbeat,
                             on_connected=self._on_connected)
        self.publisher = ConfirmedPublisher()
        self._channel: Channel | None = None
        self._declared: set[str] = set()
        self._get_lock = asyncio.Lock()
        self.leases: dict[str, BrokerLease] = {}

    async def start(self) -> None:
        await self.link.start()

    async def close(self) -> None:
        for lease in list(self.leases.values()):
            with contextlib.suppress(Exception):
                await lease.release()
        await self.link.close()

    async def _on_connected(self, link: AmqpLink) -> None:
        self._declared.clear()
        self._channel = await link.channel()
        await self.publisher.open(link)

    def lease(self, source: str) -> BrokerLease:
        lease = self.leases.get(source)
        if lease is None:
            lease = self.leases[source] = BrokerLease(self, source)
        return lease

    def state(self, source: str) -> BrokerState:
        return BrokerState(self, source)

    def channel(self) -> Channel:
        ch = self._channel
        if not self.link.connected or ch is None or not ch.is_open:
            raise BusUnavailable("the bus is not connected (lease link)")
        return ch

    async def declare_state(self, queue: str) -> Channel:
        ch = self.channel()
        if queue not in self._declared:
            args = {**self.topology.queue_arguments(), "x-max-length": 1}
            await self.link.call(ch.queue_declare, queue, durable=True, arguments=args)
            self._declared.add(queue)
        return ch

    async def get(self, queue: str) -> bytes | None:
        """The message at the head of ``queue``, left in it (``None``: empty)."""
        async with self._get_lock:
            ch = await self.declare_state(queue)
            loop = asyncio.get_running_loop()
            got: asyncio.Future[tuple[int, bytes] | None] = loop.create_future()

            def empty(_frame: Any) -> None:
                if not got.done():
                    got.set_result(None)

            def ok(_ch: Channel, method: Any, _props: Any, body: bytes) -> None:
                if not got.done():
                    got.set_result((method.delivery_tag, body))

            ch.add_callback(empty, [pika.spec.Basic.GetEmpty], one_shot=True)
            ch.basic_get(queue, ok, auto_ack=False)
            closed = self.link.closed(ch)
            done, _ = await asyncio.wait({got, closed}, timeout=self.link.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if got not in done:
                got.cancel()
                raise BusUnavailable(f"the broker did not answer a get on {queue}")
            result = got.result()
            if result is None:
                return None
            tag, body = result
            ch.basic_reject(tag, requeue=True)
            return body


class BrokerLease:
    """The lease of one ``one-instance`` source (see the module docstring)."""

    def __init__(self, owner: BrokerLeases, source: str) -> None:
        self.owner = owner
        self.source = source
        self.queue = owner.topology.lease_queue(source)
        self._channel: Channel | None = None

    @property
    def held(self) -> bool:
        ch = self._channel
        return ch is not None and ch.is_open and self.owner.link.connected

    async def acquire(self) -> None:
        """Return once this instance holds the lease (trying every ``retry`` seconds)."""
        link = self.owner.link
        while not self.held:
            if link.connected:
                try:
                    ch = await link.channel()
                    await link.call(ch.queue_declare, self.queue, exclusive=True,
                                    durable=False, auto_delete=False,
                                    arguments={"x-queue-type": "classic"})
                    self._channel = ch
                    return
                except ChannelClosed as exc:
                    if exc.code != RESOURCE_LOCKED:
                        log.warning("lease declare failed", source=self.source, error=str(exc))
                except BusError as exc:
                    log.debug("lease not reachable", source=self.source, error=str(exc))
            await asyncio.sleep(self.owner.retry)

    async def lost(self) -> None:
        """Return once this instance no longer holds the lease (its connection or channel
        closed: the broker gives the lease to another instance)."""
        ch = self._channel
        if ch is None or not ch.is_open:
            return
        await asyncio.shield(self.owner.link.closed(ch))

    async def release(self) -> None:
        """Give the lease up now (a clean stop): the next instance takes it on its next try."""
        ch, self._channel = self._channel, None
        if ch is None or not ch.is_open:
            return
        with contextlib.suppress(Exception):
            await self.owner.link.call(ch.queue_delete, self.queue)
        with contextlib.suppress(Exception):
            ch.close()


class BrokerState:
    """A source's state document on the broker (see the module docstring)."""

    def __init__(self, owner: BrokerLeases, source: str) -> None:
        self.owner = owner
        self.source = source
        self.queue = owner.topology.state_queue(source)

    async def load(self) -> dict[str, Any] | None:
        body = await self.owner.get(self.queue)
        if body is None:
            return None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ConfigError([f"state of source {self.source!r} (queue {self.queue}) is not "
                               f"JSON: {exc}; purge the queue to start over"]) from exc
        if not isinstance(document, dict):
            raise ConfigError([f"state of source {self.source!r} is not a JSON object"])
        return document

    async def save(self, document: dict[str, Any]) -> None:
        await self.owner.declare_state(self.queue)
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                     message_id=f"{self.owner.instance}:{self.source}")
        await self.owner.publisher.publish("", self.queue, orjson.dumps(document), props,
                                           timeout=10)
