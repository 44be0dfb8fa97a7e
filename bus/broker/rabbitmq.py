"""The RabbitMQ bus on pika's asyncio connection: the hot path.

* Publishing: one channel in confirm mode; every publish is ``mandatory`` and persistent, and
  many are in flight at once (a window, not one at a time: waiting for each confirm caps any
  design near 800 msg/s). A ``basic.return`` for a publish turns its confirm into a failure.
* Consuming: one channel per destination (a slow destination never starves another), with
  ``basic.qos`` prefetch, manual acks on the channel the message came from.
* Connection loss: pending confirms fail with ``BusUnavailable`` (the inbound peer is told to
  retry; nothing is half-accepted), in-flight deliveries are not acked on a new channel (the
  broker redelivers them), messages prefetched on the lost channel but not yet started are
  not delivered at all (:attr:`RabbitMessage.alive`), and consumers resume after reconnecting.
* A silent broker: a confirm waits at most ``confirm_timeout`` (then ``NoAnswer``, a
  ``BusUnavailable``: the sender is told to retry), and while the link is suspect (see
  :mod:`esb.bus.broker.connection`) publishes fail at once.
* Delayed retries: a message parks in the largest TTL tier queue that does not overshoot its
  due time (carried in the ``x-esb-due`` header); when it comes back early the consumer parks
  it again for the rest (durably: re-publish confirmed, then ack), and a remainder shorter than
  the smallest tier is waited out in process with the message still un-acked. So a delay is
  kept to within a few milliseconds whatever its length, and nothing is lost on a crash (one
  between the confirmed re-park and the ack leaves two copies: at least once, as everywhere).
  The due time is wall-clock, so instances on other hosts need synchronized clocks (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import structlog
from pika.channel import Channel

from esb.bus.broker.base import (
    DEAD_LETTER,
    RETRY_TIERS,
    UNROUTABLE,
    Handler,
    OnReply,
    OnReturned,
    Progress,
    Select,
    retry_tier,
)
from esb.bus.broker.connection import AmqpLink, redact
from esb.bus.broker.inspect import QueueInspector
from esb.bus.broker.publisher import ConfirmedPublisher
from esb.bus.broker.topology import Topology
from esb.bus.broker.transaction import TxPublisher
from esb.bus.deadletter import malformed
from esb.bus.envelope import Envelope, new_id
from esb.bus.errors import BusUnavailable

log = structlog.get_logger("esb.bus.rabbitmq")

#: Header of a delayed message: when it is due, in epoch milliseconds.
DUE_HEADER = "x-esb-due"
#: How many of the latest replies are watched for a return (:meth:`RabbitBus.reply`).
RETURN_WATCH = 4096


@dataclass
class RabbitMessage:
    envelope: Envelope
    redelivered: bool
    _channel: Channel
    _tag: int
    _done: bool = field(default=False, repr=False)

    def ack(self) -> None:
        if self._done:
            return
        self._done = True
        # Never ack on a newer channel: delivery tags are per channel, and a message whose
        # channel died is already queued again by the broker.
        if self._channel.is_open:
            self._channel.basic_ack(self._tag)

    @property
    def alive(self) -> bool:
        """False once its channel is gone: the broker has queued it again, and a delivery
        now could only be a duplicate that cannot be acked."""
        return self._channel.is_open

    def requeue(self) -> None:
        if not self._done:
            self._done = True
            if self._channel.is_open:
                self._channel.basic_nack(self._tag, requeue=True)


@dataclass
class _Consumer:
    address: str
    handler: Handler
    prefetch: int
    channel: Channel | None = None
    tag: str | None = None


class RabbitBus:
    durable = True

    def __init__(self, url: str | Sequence[str], topology: Topology, *, heartbeat: int = 30,
                 name: str = "esb", confirm_timeout: float = 5.0) -> None:
        self._url = url
        self._topology = topology
        self._confirm_timeout = confirm_timeout
        self._inspector = QueueInspector(url)
        self._link = AmqpLink(url, name=name, heartbeat=heartbeat,
                              dead_after=confirm_timeout,
                              on_connected=self._on_connected, on_lost=self._on_lost)
        self._publisher = ConfirmedPublisher()
        self._tx = TxPublisher()
        self._consumers: list[_Consumer] = []
        self._destinations: list[str] = []
        self._partitions: dict[str, int] = {}
        self._consuming = True
        self._tasks: set[asyncio.Task[None]] = set()
        #: This instance's reply queue (request/reply): exclusive to the connection, so it
        #: goes with the instance, and a reply for a caller that is gone is returned.
        self._reply_address = f"reply.{new_id()}"
        self._on_reply: OnReply | None = None
        #: The channel replies are published on: not in confirm mode (see :meth:`reply`).
        self._reply_out: Channel | None = None
        self._reply_lock = asyncio.Lock()
        #: What to call when the broker returns a reply, by the reply's message id: the
        #: latest :data:`RETURN_WATCH` replies (a return comes within a broker round trip).
        self._on_returned: OrderedDict[str, OnReturned] = OrderedDict()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected and answering (a suspect link counts as not connected)."""
        return self._link.healthy and self._publisher.ready

    @property
    def node(self) -> str:
        """The broker node the hot path is connected to (no credentials)."""
        return self._link.node

    @property
    def connects(self) -> int:
        """How many times a connection was (re-)established."""
        return self._link.connects

    async def start(self, destinations: Sequence[str],
                    partitions: Mapping[str, int] | None = None) -> None:
        self._destinations = list(destinations)
        self._partitions = dict(partitions or {})
        await self._link.start()

    async def _on_connected(self, link: AmqpLink) -> None:
        # Idempotent declarations with kombu (blocking, so off the event loop), on every
        # (re)connect: a broker that lost its state gets its topology back.
        # Declared through the node this link reached (the one known to answer).
        await asyncio.get_running_loop().run_in_executor(
            None, self._topology.declare, link.url, self._destinations, self._partitions)
        await self._publisher.open(link)
        await self._tx.open(link)
        self._reply_out = None  # (re)opened by the next reply
        if self._on_reply is not None:
            await self._start_replies(self._on_reply)
        for consumer in self._consumers:
            await self._start_consumer(consumer)
        log.info("bus connected", node=redact(link.url), connects=link.connects + 1)

    def _on_lost(self, reason: BaseException) -> None:
        self._publisher.fail_all(BusUnavailable(f"bus connection lost: {reason}"))

    # -- publishing ---------------------------------------------------------------------------

    def _check(self) -> None:
        if not self._link.connected:
            raise BusUnavailable("the bus is not connected")
        if not self._link.healthy:
            raise BusUnavailable("the bus link is not answering (reconnecting)")

    async def _publish(self, exchange: str, routing_key: str, envelope: Envelope) -> None:
        self._check()
        props = pika.BasicProperties(**envelope.amqp_properties())
        if envelope.esbreplyto is not None:
            # A request/reply request lives no longer than its caller waits: a broker restart
            # loses its caller's connection too, so writing it to disk buys nothing.
            props.delivery_mode = 1
        await self._publisher.publish(exchange, routing_key, envelope.to_json(), props,
                                      timeout=self._confirm_timeout)

    def fail_pending(self, reason: str) -> None:
        """Fail every publish still waiting for its confirm (a stop that cannot wait longer):
        their senders are answered "retry later", never left hanging."""
        self._publisher.fail_all(BusUnavailable(reason))

    async def publish(self, address: str, envelope: Envelope) -> None:
        await self._publish(self._topology.deliver_exchange, address, envelope)

    async def publish_atomically(self, publishes: Sequence[tuple[str, Envelope]],
                                 records: Sequence[tuple[str, bytes]] = ()) -> None:
        if self._topology.queue_type == "quorum":
            await self.publish_in_order(publishes, records)
            return
        exchange = self._topology.deliver_exchange
        messages = [(exchange, address, envelope.to_json(),
                     pika.BasicProperties(**envelope.amqp_properties()))
                    for address, envelope in publishes]
        messages += [("", queue, body, pika.BasicProperties(delivery_mode=2))
                     for queue, body in records]
        await self._tx.commit(messages)

    async def publish_in_order(self, publishes: Sequence[tuple[str, Envelope]],
                               records: Sequence[tuple[str, bytes]] = ()) -> None:
        """Also :meth:`publish_atomically` on quorum queues: no transaction. RabbitMQ (3.10) was
        seen answering ``commit-ok`` for messages that never reached a quorum queue once the
        queue's leader had moved (a node killed): accepted messages lost, on the transaction
        channels only. Here every copy is confirmed, and the records only after all copies: a
        failure in the middle may leave some copies published (the sender's retry repeats
        them, duplicates dropped by key), never a record without its copies."""
        await asyncio.gather(*(self.publish(a, e) for a, e in publishes))
        for queue, body in records:
            self._check()
            await self._publisher.publish("", queue, body, pika.BasicProperties(delivery_mode=2),
                                          timeout=self._confirm_timeout)

    async def publish_delayed(self, address: str, envelope: Envelope, delay: float) -> float:
        self._check()
        due_ms = int((time.time() + delay) * 1000)
        props = pika.BasicProperties(**envelope.amqp_properties(), headers={DUE_HEADER: due_ms})
        await self._park(address, envelope.to_json(), props, delay)
        return delay

    async def _park(self, address: str, body: bytes, props: pika.BasicProperties,
                    remaining: float) -> None:
        # Shorter than any tier: straight to the queue; the consumer waits out the rest.
        exchange = self._topology.deliver_exchange if remaining < RETRY_TIERS[0] \
            else self._topology.retry_exchange(retry_tier(remaining))
        await self._publisher.publish(exchange, address, body, props,
                                      timeout=self._confirm_timeout)

    async def _park_again(self, channel: Channel, tag: int, address: str, body: bytes,
                          props: pika.BasicProperties, remaining: float) -> None:
        """A delayed message back from its tier well before its due time: park it again for
        the rest (a remainder shorter than the smallest tier is waited out by the consumer,
        :func:`_later`)."""
        try:
            await self._park(address, body, props, remaining)
        except Exception as exc:
            # Left un-acked: the broker gives it back after a reconnect, or on this channel
            # after the pause (so a refusing broker is not hammered).
            log.warning("could not re-park a delayed message", error=str(exc))
            await asyncio.sleep(1.0)
            if channel.is_open:
                channel.basic_nack(tag, requeue=True)
            return
        if channel.is_open:
            channel.basic_ack(tag)

    # -- request/reply ----------------------------------------------------------------------

    async def open_replies(self, on_reply: OnReply) -> str:
        self._on_reply = on_reply
        if self._link.connected:
            await self._start_replies(on_reply)
        return self._reply_address

    async def _start_replies(self, on_reply: OnReply) -> None:
        channel = await self._link.channel(recover=True)
        queue = self._topology.queue(self._reply_address)
        await self._link.call(channel.queue_declare, queue=queue, exclusive=True,
                              auto_delete=True, arguments={"x-queue-type": "classic"})
        await self._link.call(channel.queue_bind, queue=queue,
                              exchange=self._topology.deliver_exchange,
                              routing_key=self._reply_address)

        def on_message(ch: Channel, method: Any, props: Any, body: bytes) -> None:
            try:
                envelope = Envelope.from_json(body)
            except Exception as exc:  # not ours to keep: no caller can read it either
                log.warning("dropped a reply that is not an envelope", error=str(exc))
                return
            on_reply(envelope)

        # No acks: a reply is transient (its caller is in this process or nowhere).
        channel.basic_consume(queue, on_message, auto_ack=True)

    async def reply(self, address: str, envelope: Envelope,
                    returned: OnReturned | None = None) -> None:
        """Hand a reply on without waiting for the broker (:meth:`Bus.reply`).

        A reply to this instance's own callers (its request was consumed here) never leaves
        the process: the caller's handler gets ``envelope`` itself on the next loop turn, as
        it would get a delivery — the sender never changes a reply once sent. Any other goes
        through the broker, transient, on a channel without publisher confirms: a confirm
        would prove nothing the caller needs (a reply the broker loses, like one whose caller
        is gone, ends as the caller's timeout either way, and the request is acked after the
        reply whatever the confirm says), and waiting for it held the request's prefetch slot
        one broker round trip longer. ``mandatory`` stays: a reply no queue takes (its
        caller's instance is gone) comes back, is logged, and ``returned`` hears why."""
        if address == self._reply_address and self._on_reply is not None:
            asyncio.get_running_loop().call_soon(self._on_reply, envelope)
            return
        if not self._link.connected:
            raise BusUnavailable("the bus is not connected")
        channel = self._reply_out
        if channel is None or not channel.is_open:
            channel = await self._reply_channel()
        props = pika.BasicProperties(**{**envelope.amqp_properties(), "delivery_mode": 1})
        try:
            channel.basic_publish(self._topology.deliver_exchange, address, envelope.to_json(),
                                  props, mandatory=True)
        except Exception as exc:
            raise BusUnavailable(f"publish failed: {exc}") from exc
        if returned is not None:
            self._on_returned[props.message_id] = returned
            if len(self._on_returned) > RETURN_WATCH:
                self._on_returned.popitem(last=False)

    async def _reply_channel(self) -> Channel:
        """The reply channel, opened on first use after each (re)connect (once, however many
        replies ask for it at the same time)."""
        async with self._reply_lock:
            channel = self._reply_out
            if channel is None or not channel.is_open:
                channel = await self._link.channel(recover=True)
                channel.add_on_return_callback(self._reply_returned)
                self._reply_out = channel
            return channel

    def _reply_returned(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        """A reply no queue took: its caller's instance is gone (nobody waits for it)."""
        reason = f"{method.reply_code} {method.reply_text}"
        log.info("the caller is gone; reply dropped", reply_id=props.message_id,
                 address=method.routing_key, reason=reason)
        hook = self._on_returned.pop(props.message_id, None)
        if hook is not None:
            hook(reason)

    # -- consuming ----------------------------------------------------------------------------

    async def consume(self, address: str, handler: Handler, prefetch: int) -> None:
        consumer = _Consumer(address, handler, prefetch)
        self._consumers.append(consumer)
        if self._link.connected:
            await self._start_consumer(consumer)

    async def _start_consumer(self, consumer: _Consumer) -> None:
        if not self._consuming:
            return
        channel = await self._link.channel(recover=True)
        await self._link.call(channel.basic_qos, prefetch_count=consumer.prefetch)
        consumer.channel = channel
        loop = asyncio.get_running_loop()

        def on_message(ch: Channel, method: Any, props: Any, body: bytes) -> None:
            headers = props.headers
            remaining = 0.0
            due = headers.get(DUE_HEADER) if headers else None
            if isinstance(due, (int, float)) and not isinstance(due, bool):
                remaining = due / 1000 - time.time()
                if remaining >= RETRY_TIERS[0]:
                    self._spawn(loop, self._park_again(ch, method.delivery_tag,
                                                       consumer.address, body, props, remaining))
                    return
            try:
                envelope = Envelope.from_json(body)
            except Exception as exc:
                self._spawn(loop, self._quarantine(ch, method.delivery_tag, body, exc))
                return
            msg = RabbitMessage(envelope, bool(method.redelivered), ch, method.delivery_tag)
            if remaining > 0.002:  # shorter than any tier: waited out here, still un-acked
                self._spawn(loop, _later(remaining, consumer.handler, msg))
                return
            self._spawn(loop, consumer.handler(msg))

        consumer.tag = channel.basic_consume(self._topology.queue(consumer.address),
                                             on_message, auto_ack=False)

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Any) -> None:
        # Hold a reference until done: the loop itself keeps only weak ones.
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quarantine(self, channel: Channel, tag: int, body: bytes,
                          exc: Exception) -> None:
        """A body on our queue that is not an envelope: keep it, in the DLQ, as bytes."""
        try:
            await self.publish(DEAD_LETTER, malformed(body, exc))
        except Exception:
            return  # left unacked: redelivered later
        if channel.is_open:
            channel.basic_ack(tag)

    async def stop_consuming(self) -> None:
        self._consuming = False
        for consumer in self._consumers:
            if consumer.channel is not None and consumer.channel.is_open and consumer.tag:
                with contextlib.suppress(Exception):
                    await self._link.call(consumer.channel.basic_cancel, consumer.tag)

    async def depths(self) -> dict[str, int]:
        addresses = [c.address for c in self._consumers] + [UNROUTABLE, DEAD_LETTER]
        return await asyncio.to_thread(self._topology.depths, self._url, addresses)

    async def browse(self, address: str, limit: int) -> list[Envelope]:
        return await asyncio.to_thread(self._inspector.browse, self._topology.queue(address),
                                       limit)

    async def take(self, address: str, select: Select,
                   handle: Callable[[Envelope], Awaitable[None]], limit: int | None = None,
                   progress: Progress | None = None) -> tuple[int, int]:
        loop = asyncio.get_running_loop()

        def handle_in_loop(env: Envelope) -> None:  # called from the inspector's thread
            asyncio.run_coroutine_threadsafe(handle(env), loop).result(timeout=60)

        def progress_in_loop(done: int, total: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, done, total)

        return await loop.run_in_executor(None, self._inspector.take,
                                          self._topology.queue(address), select,
                                          handle_in_loop, limit, progress_in_loop)

    async def purge(self, address: str) -> int:
        return await asyncio.to_thread(self._inspector.purge, self._topology.queue(address))

    async def close(self) -> None:
        await self._link.close()


async def _later(delay: float, handler: Handler, msg: RabbitMessage) -> None:
    await asyncio.sleep(delay)
    await handler(msg)


