"""One pika asyncio connection that keeps itself up: the building block every RabbitMQ-backed
part of esb shares (the bus, the route store, trace, presence, idempotency records).

The owner passes ``on_connected``, which declares what it needs and opens its channels; it runs
after the first connect and again after every reconnect. Pending work of a lost connection is
the owner's to fail (``on_lost``). pika's callback style is wrapped into awaitables here, once:
:meth:`AmqpLink.call` fails fast with :class:`ChannelClosed` when the broker closes the channel
under it (a 406 on a declare ...), and with :class:`NoAnswer` when the broker stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pika
import structlog
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from esb.bus.errors import BusUnavailable

log = structlog.get_logger("esb.bus.connection")


class ChannelClosed(BusUnavailable):
    """The broker closed the channel a call was waiting on; ``code`` is its reply code."""

    def __init__(self, reason: BaseException) -> None:
        self.reason = reason
        self.code: int | None = getattr(reason, "reply_code", None)
        super().__init__(str(reason))


class NoAnswer(BusUnavailable, TimeoutError):
    """The broker did not answer in time (still a ``TimeoutError`` for older callers)."""


class CoalescingConnection(AsyncioConnection):
    """Writes all frames produced in one event-loop turn with a single send.

    pika emits every frame with its own write: a publish is three frames (method, header,
    body) and every ack one more, and one syscall per frame was the largest single cost in the
    daemon's profile. Buffering until the end of the turn keeps frame order and adds no delay.
    """

    _pending_frames: list[bytes] | None = None

    def _output_marshaled_frames(self, marshaled_frames: Any) -> None:
        out = self._pending_frames
        if out is None:
            out = self._pending_frames = []
            asyncio.get_running_loop().call_soon(self._flush_frames)
        for marshaled in marshaled_frames:
            self.bytes_sent += len(marshaled)
            self.frames_sent += 1
            out.append(marshaled)

    def _flush_frames(self) -> None:
        out, self._pending_frames = self._pending_frames, None
        if out and self._transport is not None:
            with contextlib.suppress(Exception):  # a dying transport reports via on_close
                self._adapter_emit_data(b"".join(out))

    def _adapter_disconnect_stream(self) -> None:
        self._flush_frames()
        super()._adapter_disconnect_stream()


def connect_reason(exc: BaseException | str) -> str:
    """Why a connection attempt failed, in words: pika wraps the socket, TLS or handshake
    error in exceptions whose text is empty."""
    for _ in range(6):  # AMQPConnectionError > WorkflowFailed > PhaseError > the OS error
        if isinstance(exc, str):
            return exc or "unknown error"
        inner = None
        if exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        elif getattr(exc, "exceptions", None):
            inner = exc.exceptions[-1]  # type: ignore[attr-defined]
        elif isinstance(getattr(exc, "exception", None), BaseException):
            inner = exc.exception  # type: ignore[attr-defined]
        if inner is None:
            break
        exc = inner
    if isinstance(exc, str):
        return exc or "unknown error"
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror and not text.startswith("["):
        text = exc.strerror
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def redact(url: str) -> str:
    """The URL without credentials, for logs."""
    params = pika.URLParameters(url)
    return f"{params.host}:{params.port} vhost {params.virtual_host}"


class AmqpLink:
    def __init__(self, url: str, *, name: str, heartbeat: int = 30,
                 on_connected: Callable[[AmqpLink], Awaitable[None]],
                 on_lost: Callable[[BaseException], None] | None = None,
                 timeout: float = 10.0, reconnect: bool = True,
                 reconnect_max: float = 10.0) -> None:
        """``reconnect=False``: no background reconnection; the owner calls :meth:`start` again
        when it needs the link (connect on demand). ``reconnect_max`` caps the back-off."""
        self.url = url
        self.params = pika.URLParameters(url)
        self.params.heartbeat = heartbeat
        self.params.client_properties = {"connection_name": name}
        self.name = name
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnect_max = reconnect_max
        self._on_connected = on_connected
        self._on_lost = on_lost
        self.connection: AsyncioConnection | None = None
        self._current: AsyncioConnection | None = None  # the latest attempt
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        #: How many times a connection was (re-)established.
        self.connects = 0
        self._closed: weakref.WeakKeyDictionary[Channel, asyncio.Future[BaseException]] = \
            weakref.WeakKeyDictionary()

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called: channel closures are then expected."""
        return self._closing

    async def start(self) -> None:
        """Connect once (raising BusUnavailable if that fails), then keep reconnecting (unless
        ``reconnect=False``)."""
        self._closing = False  # a link may be started again after close()
        try:
            await self._connect()
        finally:
            if self.reconnect and (self._supervisor is None or self._supervisor.done()):
                self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = 0.5
        while not self._closing:
            if self.connected:
                await self._lost.wait()
            if self._closing:
                return
            try:
                await self._connect()
                delay = 0.5
            except Exception as exc:  # the broker may be restarting: keep trying
                log.warning("reconnect failed", link=self.name, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max)

    async def _connect(self) -> None:
        self._lost.clear()
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def on_open(conn: AsyncioConnection) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_open_error(conn: AsyncioConnection, exc: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(BusUnavailable(
                    f"cannot connect to the bus at {redact(self.url)}: {connect_reason(exc)}"))

        self._current = CoalescingConnection(self.params, on_open_callback=on_open,
                                             on_open_error_callback=on_open_error,
                                             on_close_callback=self._on_closed,
                                             custom_ioloop=loop)
        try:
            self.connection = await asyncio.wait_for(opened, 30)
        except TimeoutError:
            raise BusUnavailable("timed out connecting to the bus") from None
        try:
            await self._on_connected(self)
        except BaseException:
            with contextlib.suppress(Exception):
                self.connection.close()
            raise
        self.connects += 1
        self._ready.set()

    def _on_closed(self, conn: AsyncioConnection, reason: BaseException) -> None:
        if conn is not self._current:
            # An earlier attempt (its on_connected failed) whose close arrives after a newer
            # connect began: not the live connection's loss.
            return
        self._ready.clear()
        if self._on_lost is not None:
            self._on_lost(reason)
        if not self._closing:
            log.warning("connection lost", link=self.name, reason=str(reason))
            self._lost.set()

    def drop(self) -> None:
        """Close the connection so the supervisor builds everything again (channel errors)."""
        if self.connection is not None and self.connection.is_open and not self._closing:
            with contextlib.suppress(Exception):
                self.connection.close()

    async def channel(self, on_close: Callable[[Channel, BaseException], None] | None = None
                      ) -> Channel:
        if self.connection is None or not self.connection.is_open:
            raise BusUnavailable("the bus is not connected")
        fut: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
        self.connection.channel(on_open_callback=fut.set_result)
        try:
            ch = await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise NoAnswer("the broker did not open a channel") from None
        closed: asyncio.Future[BaseException] = fut.get_loop().create_future()

        def on_closed(channel: Channel, reason: BaseException) -> None:
            if not closed.done():
                closed.set_result(reason)

        ch.add_on_close_callback(on_closed)
        self._closed[ch] = closed
        if on_close is not None:
            ch.add_on_close_callback(on_close)
        return ch

    def closed(self, channel: Channel) -> asyncio.Future[BaseException]:
        """Resolves with the reason once ``channel`` (opened by :meth:`channel`) is closed."""
        return self._closed[channel]

    async def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Await a pika method that reports completion through a ``callback`` argument.

        On a channel from :meth:`channel`, a close by the broker meanwhile raises
        :class:`ChannelClosed` at once; no answer within ``timeout`` raises :class:`NoAnswer`."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(frame: Any = None) -> None:
            if not fut.done():
                fut.set_result(frame)

        channel = getattr(method, "__self__", None)
        closed = self._closed.get(channel) if isinstance(channel, Channel) else None
        if closed is not None and closed.done():
            raise ChannelClosed(closed.result())
        method(*args, callback=done, **kwargs)
        waiting = {fut} if closed is None else {fut, closed}
        finished, _ = await asyncio.wait(waiting, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        if fut in finished:
            return fut.result()
        fut.cancel()
        if closed is not None and closed in finished:
            raise ChannelClosed(closed.result())
        raise NoAnswer(f"the broker did not answer {getattr(method, '__name__', 'a call')}")

    async def close(self) -> None:
        self._closing = True
        self._lost.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        conn = self.connection
        if conn is not None and conn.is_open:
            conn.close()
            for _ in range(100):
                if conn.is_closed:
                    break
                await asyncio.sleep(0.02)
        self._ready.clear()
