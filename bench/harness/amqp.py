"""The bare pika plumbing the bench's own relays share (bench/ceiling.py, bench/bus_hop.py):
a connection on the running loop, channels, an RPC awaited, and publisher confirms settled
per delivery tag. Nothing of esb's: these relays are the references esb is measured against.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel


async def connect(params: pika.URLParameters) -> AsyncioConnection:
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[AsyncioConnection] = loop.create_future()
    AsyncioConnection(params, on_open_callback=opened.set_result,
                      on_open_error_callback=lambda c, e: opened.set_exception(
                          RuntimeError(f"cannot connect: {e}")),
                      custom_ioloop=loop)
    return await asyncio.wait_for(opened, 30)


async def channel(conn: AsyncioConnection) -> Channel:
    fut: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
    conn.channel(on_open_callback=fut.set_result)
    return await asyncio.wait_for(fut, 10)


async def call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """A pika RPC (``queue_declare``, ``basic_qos`` ...) awaited; its answer frame."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    method(*args, callback=lambda frame=None: fut.done() or fut.set_result(frame), **kwargs)
    return await asyncio.wait_for(fut, 10)


class Confirms:
    """The publisher confirms of one channel in confirm mode: :meth:`expect` a future per
    delivery tag (publish with ``message_id`` = the tag), settled by the broker's ack; a nack,
    or a ``basic.return`` before the ack (``mandatory``, no queue took it), fails it."""

    def __init__(self) -> None:
        self.tag = 0
        self.pending: dict[int, asyncio.Future[None]] = {}
        self.returned: set[int] = set()

    async def attach(self, ch: Channel) -> None:
        await call(ch.confirm_delivery, ack_nack_callback=self._on_confirm)
        ch.add_on_return_callback(self._on_return)

    def expect(self) -> tuple[int, asyncio.Future[None]]:
        """The next publish's delivery tag and the future its confirm settles."""
        self.tag += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[self.tag] = fut
        return self.tag, fut

    def _on_return(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        self.returned.add(int(props.message_id))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self.pending if t <= method.delivery_tag] if method.multiple \
            else [method.delivery_tag]
        for tag in tags:
            fut = self.pending.pop(tag, None)
            if fut is None or fut.done():
                continue
            if acked and tag not in self.returned:
                fut.set_result(None)
            else:
                self.returned.discard(tag)
                fut.set_exception(RuntimeError("not confirmed"))
