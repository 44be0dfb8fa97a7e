"""The RabbitMQ bus on pika's asyncio connection: the hot path.

* Publishing: one channel in confirm mode; every publish is ``mandatory`` and persistent, and
  many are in flight at once (a window, not one at a time: waiting for each confirm caps any
  design near 800 msg/s). A ``basic.return`` for a publish turns its confirm into a failure.
* Consuming: one channel per destination (a slow destination never starves another), with
  ``basic.qos`` prefetch, manual acks on the channel the message came from.
* Connection loss: pending confirms fail with ``BusUnavailable`` (the inbound peer is told to
  retry; nothing is half-accepted), in-flight deliveries are not acked on a new channel (the
  broker redelivers them), and consumers resume after reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import structlog
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from esb.bus.broker.base import DEAD_LETTER, UNROUTABLE, Handler, Progress, Select, retry_tier
from esb.bus.broker.inspect import QueueInspector
from esb.bus.broker.topology import Topology
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, PublishRejected

log = structlog.get_logger("esb.bus.rabbitmq")


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


@dataclass
class _Pending:
    future: asyncio.Future[None]
    key: tuple[str, str]
    returned: str | None = None


class RabbitBus:
    durable = True

    def __init__(self, url: str, topology: Topology, *, confirm_window: int = 1000,
                 heartbeat: int = 30, name: str = "esb") -> None:
        self._url = url
        self._topology = topology
        self._inspector = QueueInspector(url)
        self._params = pika.URLParameters(url)
        self._params.heartbeat = heartbeat
        self._params.client_properties = {"connection_name": name}
        self._window = asyncio.Semaphore(confirm_window)
        self._conn: AsyncioConnection | None = None
        self._pub: Channel | None = None
        self._tag = 0
        self._pending: dict[int, _Pending] = {}
        self._by_key: dict[tuple[str, str], int] = {}
        self._consumers: list[_Consumer] = []
        self._destinations: list[str] = []
        self._partitions: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._closing = False
        self._consuming = True
        self._supervisor: asyncio.Task[None] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: How many times a connection was (re-)established.
        self.connects = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def start(self, destinations: Sequence[str],
                    partitions: Mapping[str, int] | None = None) -> None:
        self._destinations = list(destinations)
        self._partitions = dict(partitions or {})
        await self._connect()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = 0.5
        while not self._closing:
            await self._lost.wait()
            if self._closing:
                return
            try:
                await self._connect()
                delay = 0.5
            except Exception as exc:  # keep trying: the broker may be restarting
                log.warning("bus reconnect failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _connect(self) -> None:
        self._lost.clear()
        loop = asyncio.get_running_loop()
        # Idempotent declarations with kombu (blocking, so off the event loop).
        await loop.run_in_executor(None, self._topology.declare, self._url, self._destinations,
                                   self._partitions)
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def on_open(conn: AsyncioConnection) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_open_error(conn: AsyncioConnection, exc: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(BusUnavailable(f"cannot connect to the bus: {exc}"))

        AsyncioConnection(self._params, on_open_callback=on_open,
                          on_open_error_callback=on_open_error,
                          on_close_callback=self._on_connection_closed, custom_ioloop=loop)
        self._conn = await asyncio.wait_for(opened, 30)
        self._pub = await self._open_channel()
        await self._call(self._pub.confirm_delivery, ack_nack_callback=self._on_confirm)
        self._pub.add_on_return_callback(self._on_return)
        self._tag = 0
        for consumer in self._consumers:
            await self._start_consumer(consumer)
        self.connects += 1
        self._ready.set()
        log.info("bus connected", url=_redact(self._url), connects=self.connects)

    async def _open_channel(self) -> Channel:
        assert self._conn is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Channel] = loop.create_future()
        self._conn.channel(on_open_callback=fut.set_result)
        channel = await asyncio.wait_for(fut, 10)
        channel.add_on_close_callback(self._on_channel_closed)
        return channel

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Await a pika method that reports completion through a ``callback`` argument."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(frame: Any = None) -> None:
            if not fut.done():
                fut.set_result(frame)

        method(*args, callback=done, **kwargs)
        return await asyncio.wait_for(fut, 10)

    def _on_connection_closed(self, conn: AsyncioConnection, reason: BaseException) -> None:
        self._ready.clear()
        self._fail_pending(BusUnavailable(f"bus connection lost: {reason}"))
        if not self._closing:
            log.warning("bus connection lost", reason=str(reason))
            self._lost.set()

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if channel is self._pub:
            self._fail_pending(BusUnavailable(f"bus channel closed: {reason}"))
            self._ready.clear()
        if not self._closing and self._conn is not None and self._conn.is_open:
            # A channel error (e.g. a deleted queue) is recovered by reconnecting whole.
            log.warning("bus channel closed", reason=str(reason))
            with contextlib.suppress(Exception):
                self._conn.close()

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending, self._by_key = self._pending, {}, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)

    # -- publishing ---------------------------------------------------------------------------

    def _on_return(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        tag = self._by_key.get((props.message_id, method.routing_key))
        if tag is not None and tag in self._pending:
            self._pending[tag].returned = f"{method.reply_code} {method.reply_text}"

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self._pending if t <= method.delivery_tag] if method.multiple \
            else [method.delivery_tag]
        for tag in tags:
            p = self._pending.pop(tag, None)
            if p is None:
                continue
            self._by_key.pop(p.key, None)
            if p.future.done():
                continue
            if not acked:
                p.future.set_exception(PublishRejected("the broker refused the message (nack)"))
            elif p.returned:
                p.future.set_exception(PublishRejected(
                    f"no queue took the message ({p.returned}): is the topology declared?"))
            else:
                p.future.set_result(None)

    async def _publish(self, exchange: str, routing_key: str, envelope: Envelope) -> None:
        async with self._window:
            channel = self._pub
            if channel is None or not channel.is_open or not self._ready.is_set():
                raise BusUnavailable("the bus is not connected")
            props = pika.BasicProperties(**envelope.amqp_properties())
            self._tag += 1
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            key = (envelope.id, routing_key)
            self._pending[self._tag] = _Pending(fut, key)
            self._by_key[key] = self._tag
            try:
                channel.basic_publish(exchange, routing_key, envelope.to_json(), props,
                                      mandatory=True)
            except Exception as exc:
                self._pending.pop(self._tag, None)
                raise BusUnavailable(f"publish failed: {exc}") from exc
            await fut

    async def publish(self, address: str, envelope: Envelope) -> None:
        await self._publish(self._topology.deliver_exchange, address, envelope)

    async def publish_delayed(self, address: str, envelope: Envelope, delay: float) -> float:
        tier = retry_tier(delay)
        await self._publish(self._topology.retry_exchange(tier), address, envelope)
        return tier

    # -- consuming ----------------------------------------------------------------------------

    async def consume(self, address: str, handler: Handler, prefetch: int) -> None:
        consumer = _Consumer(address, handler, prefetch)
        self._consumers.append(consumer)
        if self._ready.is_set():
            await self._start_consumer(consumer)

    async def _start_consumer(self, consumer: _Consumer) -> None:
        if not self._consuming:
            return
        channel = await self._open_channel()
        await self._call(channel.basic_qos, prefetch_count=consumer.prefetch)
        consumer.channel = channel
        loop = asyncio.get_running_loop()

        def on_message(ch: Channel, method: Any, props: Any, body: bytes) -> None:
            try:
                envelope = Envelope.from_json(body)
            except Exception as exc:
                self._spawn(loop, self._quarantine(ch, method.delivery_tag, body, exc))
                return
            msg = RabbitMessage(envelope, bool(method.redelivered), ch, method.delivery_tag)
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
        envelope = Envelope(source="esb", type="esb.malformed", data=body,
                            datacontenttype="application/octet-stream",
                            esberror=f"not a valid envelope: {exc}")
        try:
            await self.publish(DEAD_LETTER, envelope)
        except Exception:
            return  # left unacked: redelivered later
        if channel.is_open:
            channel.basic_ack(tag)

    async def stop_consuming(self) -> None:
        self._consuming = False
        for consumer in self._consumers:
            if consumer.channel is not None and consumer.channel.is_open and consumer.tag:
                with contextlib.suppress(Exception):
                    await self._call(consumer.channel.basic_cancel, consumer.tag)

    async def depths(self) -> dict[str, int]:
        addresses = [c.address for c in self._consumers] + [UNROUTABLE, DEAD_LETTER]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._topology.depths, self._url, addresses)

    async def browse(self, address: str, limit: int) -> list[Envelope]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._inspector.browse,
                                          self._topology.queue(address), limit)

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
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._inspector.purge,
                                          self._topology.queue(address))

    async def close(self) -> None:
        self._closing = True
        self._lost.set()
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        conn = self._conn
        if conn is not None and conn.is_open:
            conn.close()
            for _ in range(100):
                if conn.is_closed:
                    break
                await asyncio.sleep(0.02)
        self._ready.clear()


def _redact(url: str) -> str:
    """The URL without credentials, for logs."""
    params = pika.URLParameters(url)
    return f"{params.host}:{params.port} vhost {params.virtual_host}"
