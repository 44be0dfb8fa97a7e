"""A request's way through RabbitMQ and its reply's way back, with nothing else: the floor of
what request/reply through a broker costs in Python, for ``bench/direct_proxy.py --bus``.

The caller publishes the request on a confirm channel (transient, ``mandatory``, with
``reply_to`` its own exclusive reply queue and a correlation id) and waits for the confirm,
then for the reply (a loop timer bounds the wait). Any process's consumer of the shared queue
(prefetch, a bounded number of calls at once) runs the exchange with the backend, publishes the
answer to the caller's reply queue (transient, no confirm) and acks the request; an answer to a
caller of the same process is handed over in process. That is esb's request/reply
path (``bus/broker/rabbitmq.py``: the same publish flags, the same local shortcut) without the
envelope, routing, bookkeeping, trace or metrics, so ``rr-rest`` against ``rr-relay-rest``
says what esb's own logic costs, and ``rr-relay-rest`` against ``rr-direct-rest`` what the two
broker hops cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pika
from harness import amqp
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

#: (status, body, content type) of a backend's answer.
Answer = tuple[int, bytes, str | None]
Exchange = Callable[[bytes, str | None], Awaitable[Answer]]


class BusHop:
    def __init__(self, url: str, queue: str, exchange: Exchange, *, prefetch: int = 200,
                 concurrency: int = 64, timeout: float = 30.0) -> None:
        self.params = pika.URLParameters(url)
        self.queue = queue
        self.exchange = exchange
        self.prefetch = prefetch
        self.slots = asyncio.Semaphore(concurrency)
        self.timeout = timeout
        self.conn: AsyncioConnection | None = None
        self.pub: Channel | None = None
        self.replies: Channel | None = None
        self.reply_queue = ""
        self.ids = itertools.count(1)
        self.confirms = amqp.Confirms()
        self.waiting: dict[str, asyncio.Future[Answer]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.conn = await amqp.connect(self.params)
        self.pub = await amqp.channel(self.conn)
        await amqp.call(self.pub.queue_declare, self.queue, durable=True)
        await self.confirms.attach(self.pub)
        self.replies = await amqp.channel(self.conn)
        frame = await amqp.call(self.replies.queue_declare, "", exclusive=True,
                                auto_delete=True)
        self.reply_queue = frame.method.queue
        self.replies.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)
        requests = await amqp.channel(self.conn)
        await amqp.call(requests.basic_qos, prefetch_count=self.prefetch)
        requests.basic_consume(self.queue, self._on_request, auto_ack=False)

    async def call(self, body: bytes, content_type: str | None) -> Answer:
        """Send ``body`` as a request and wait for its answer (a timeout: 504)."""
        assert self.pub is not None
        loop = asyncio.get_running_loop()
        tag, confirmed = self.confirms.expect()
        corr = str(next(self.ids))
        answered: asyncio.Future[Answer] = loop.create_future()
        self.waiting[corr] = answered
        timer = loop.call_later(self.timeout, _settle, answered, (504, b"timeout", None))
        try:
            self.pub.basic_publish("", self.queue, body, pika.BasicProperties(
                delivery_mode=1, message_id=str(tag), correlation_id=corr,
                reply_to=self.reply_queue, content_type=content_type), mandatory=True)
            await confirmed
            return await answered
        finally:
            timer.cancel()
            self.waiting.pop(corr, None)

    async def close(self) -> None:
        for _ in range(100):
            if not self.tasks:
                break
            await asyncio.sleep(0.05)
        if self.conn is not None and self.conn.is_open:
            self.conn.close()

    # -- the consumer's side ---------------------------------------------------------------------

    def _on_request(self, ch: Channel, method: Any, props: Any, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(
            self._serve(ch, method.delivery_tag, props, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, ch: Channel, tag: int, props: Any, body: bytes) -> None:
        async with self.slots:
            try:
                status, content, ctype = await self.exchange(body, props.content_type)
            except Exception as exc:
                status, content, ctype = 502, str(exc).encode(), "text/plain"
        if props.reply_to == self.reply_queue:  # this process's caller
            fut = self.waiting.get(props.correlation_id)
            if fut is not None:
                _settle(fut, (status, content, ctype))
        elif self.replies is not None and self.replies.is_open:
            self.replies.basic_publish("", props.reply_to, content, pika.BasicProperties(
                delivery_mode=1, correlation_id=props.correlation_id, type=str(status),
                content_type=ctype))
        if ch.is_open:
            ch.basic_ack(tag)

    def _on_reply(self, ch: Channel, method: Any, props: Any, body: bytes) -> None:
        fut = self.waiting.get(props.correlation_id)
        if fut is not None:
            _settle(fut, (int(props.type or 502), body, props.content_type))


def _settle(fut: asyncio.Future[Answer], answer: Answer) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        fut.set_result(answer)
