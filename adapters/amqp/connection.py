"""Small awaitable wrappers over pika's callback-style asyncio connection, shared by the amqp
adapter's two sides (the bus's own :mod:`esb.bus.broker.rabbitmq` has the same few lines
privately; it could use these).

Every wait is bounded; failures to connect raise :class:`AmqpUnavailable` with the broker
named by host, port and vhost only — never the URL, which carries the password.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

#: Seconds to wait for the broker to answer a connection, channel or method.
TIMEOUT = 10.0


class AmqpUnavailable(Exception):
    """Could not connect, or the connection/channel is gone."""


def parameters(url: str, *, heartbeat: int, name: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    params.client_properties = {"connection_name": name}
    params.connection_attempts = 1
    params.socket_timeout = TIMEOUT
    return params


def describe(url: str) -> str:
    """The broker for messages and logs: host, port and vhost, no credentials."""
    try:
        p = pika.URLParameters(url)
    except Exception:
        return "(invalid AMQP URL)"
    return f"{p.host}:{p.port} vhost {p.virtual_host!r}"


async def connect(params: pika.URLParameters, *, on_closed: Any = None,
                  what: str = "the broker") -> AsyncioConnection:
    """An open connection. ``on_closed(connection, reason)`` is called when it closes later."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[AsyncioConnection] = loop.create_future()

    def on_open(conn: AsyncioConnection) -> None:
        if not opened.done():
            opened.set_result(conn)

    def on_open_error(conn: AsyncioConnection, exc: BaseException | str) -> None:
        if not opened.done():
            opened.set_exception(AmqpUnavailable(f"cannot connect to {what}: {exc}"))

    def closed(conn: AsyncioConnection, reason: BaseException) -> None:
        if not opened.done():
            opened.set_exception(AmqpUnavailable(f"cannot connect to {what}: {reason}"))
        elif on_closed is not None:
            on_closed(conn, reason)

    conn = AsyncioConnection(params, on_open_callback=on_open,
                             on_open_error_callback=on_open_error,
                             on_close_callback=closed, custom_ioloop=loop)
    try:
        return await asyncio.wait_for(opened, TIMEOUT)
    except TimeoutError:
        close(conn)
        raise AmqpUnavailable(f"cannot connect to {what}: timed out") from None
    except asyncio.CancelledError:
        close(conn)
        raise


async def open_channel(conn: AsyncioConnection, *, on_closed: Any = None) -> Channel:
    fut: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()

    def opened(channel: Channel) -> None:
        if not fut.done():
            fut.set_result(channel)

    conn.channel(on_open_callback=opened)
    try:
        channel = await asyncio.wait_for(fut, TIMEOUT)
    except TimeoutError:
        raise AmqpUnavailable("the broker did not open a channel") from None
    if on_closed is not None:
        channel.add_on_close_callback(on_closed)
    return channel


async def call(channel: Channel, method: Any, *args: Any, **kwargs: Any) -> Any:
    """Await a pika channel method that reports completion through ``callback``; fails with
    :class:`AmqpUnavailable` when the channel closes first (e.g. a passive declare of a
    missing queue: 404 NOT_FOUND)."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(frame: Any = None) -> None:
        if not fut.done():
            fut.set_result(frame)

    def closed(ch: Channel, reason: BaseException) -> None:
        if not fut.done():
            fut.set_exception(AmqpUnavailable(f"channel closed: {reason}"))

    channel.add_on_close_callback(closed)
    try:
        method(*args, callback=done, **kwargs)
        return await asyncio.wait_for(fut, TIMEOUT)
    except TimeoutError:
        raise AmqpUnavailable("the broker did not answer in time") from None
    except (pika.exceptions.ChannelWrongStateError, pika.exceptions.ConnectionWrongStateError
            ) as exc:
        raise AmqpUnavailable(f"channel closed: {exc}") from None
    finally:
        _remove_close_callback(channel, closed)


def _remove_close_callback(channel: Channel, callback: Any) -> None:
    # pika has no public removal; its callback manager does.
    with contextlib.suppress(Exception):
        channel.callbacks.remove(channel.channel_number, "_on_channel_close", callback)


def close(conn: AsyncioConnection | None) -> None:
    if conn is not None and not conn.is_closed and not conn.is_closing:
        with contextlib.suppress(Exception):
            conn.close()


async def close_and_wait(conn: AsyncioConnection | None, timeout: float = 2.0) -> None:
    """Close ``conn`` and wait (bounded) until pika reports it closed."""
    if conn is None:
        return
    close(conn)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not conn.is_closed and loop.time() < deadline:
        await asyncio.sleep(0.01)
