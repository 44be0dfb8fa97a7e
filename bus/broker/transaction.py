"""All-or-nothing publishes: several messages (the parts of a split, the copies of an
envelope plus the record that its idempotency key was taken) committed in one AMQP transaction.

A transaction on a RabbitMQ channel buffers every publish until ``tx.commit``; a client that
dies (``kill -9``) or loses its connection before the commit leaves nothing behind, and once
``commit-ok`` arrives every message is in its queue (persisted, for persistent messages on
durable queues). That is what confirms cannot give: with confirms, a crash between two
confirmed publishes leaves the first one published. (RabbitMQ does not promise atomicity
across queues should the *broker* fail in the middle of a commit; a client crash is covered.)

Transactions and confirms cannot share a channel, so this keeps a small pool of its own
(``tx.select`` once per channel): each commit waits for its own channel, several commits run
side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pika
from pika.channel import Channel

from esb.bus.broker.connection import AmqpLink
from esb.bus.errors import BusUnavailable, CommitUncertain

#: One message of a transaction: exchange, routing key, body, properties.
TxMessage = tuple[str, str, bytes, pika.BasicProperties]


class TxPublisher:
    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._free: asyncio.Queue[Channel] = asyncio.Queue()
        self._link: AmqpLink | None = None
        self._returned: dict[int, str] = {}

    async def open(self, link: AmqpLink) -> None:
        """Open the pool on ``link`` (call from its ``on_connected``)."""
        self._link = link
        self._free = asyncio.Queue()
        for _ in range(self.size):
            channel = await link.channel()
            await link.call(channel.tx_select)
            channel.add_on_return_callback(self._on_return)
            self._free.put_nowait(channel)

    def _on_return(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        self._returned[channel.channel_number] = f"{method.reply_code} {method.reply_text}"

    async def commit(self, messages: Sequence[TxMessage], timeout: float = 10.0) -> None:
        """Publish ``messages`` in one transaction; return once the broker committed them.
        Raises :class:`~esb.bus.errors.BusUnavailable` when it did not and nothing was
        taken, :class:`~esb.bus.errors.CommitUncertain` when the commit was sent but not
        answered (any part of it may have been taken)."""
        link = self._link
        if link is None or not link.connected:
            raise BusUnavailable("the bus is not connected")
        try:
            channel = await asyncio.wait_for(self._free.get(), timeout)
        except TimeoutError:
            raise BusUnavailable("no transaction channel free in time") from None
        healthy = False
        try:
            if not channel.is_open:
                raise BusUnavailable("the bus channel closed")
            self._returned.pop(channel.channel_number, None)
            try:
                for exchange, key, body, props in messages:
                    channel.basic_publish(exchange, key, body, props, mandatory=True)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await link.call(channel.tx_rollback)
                raise BusUnavailable(f"publish failed: {exc}") from exc
            try:
                await link.call(channel.tx_commit)
            except BusUnavailable as exc:
                raise CommitUncertain(f"the commit was not answered: {exc}") from exc
            healthy = True
            returned = self._returned.pop(channel.channel_number, None)
            if returned:
                # Committed, but one message reached no queue: the topology is missing.
                raise BusUnavailable(f"a message of the transaction reached no queue "
                                     f"({returned}): is the topology declared?")
        finally:
            if healthy or channel.is_open:
                self._free.put_nowait(channel)
            else:
                asyncio.get_running_loop().create_task(self._replace(link))

    async def _replace(self, link: AmqpLink) -> None:
        """A channel the broker closed is replaced (a reconnect rebuilds the whole pool)."""
        with contextlib.suppress(Exception):
            channel = await link.channel()
            await link.call(channel.tx_select)
            channel.add_on_return_callback(self._on_return)
            if self._link is link:
                self._free.put_nowait(channel)
