"""One pika asyncio connection that keeps itself up: the building block every RabbitMQ-backed
part of esb shares (the bus, the route store, trace, presence, idempotency records, the amqp
adapter's own broker links).

Several nodes: the URL may name a cluster's nodes (see :func:`broker_urls`); a link connects to
the first node that answers and, when its node dies, moves on to the next one.

A link that goes silent (a partition: no FIN, no RST) is found out by the link itself, not only
by AMQP heartbeats: whenever nothing arrived from the broker for :data:`PROBE_INTERVAL`, it asks
the broker something cheap on a channel of its own (``basic.qos``). An answer that does not come
within :data:`SUSPECT_AFTER` makes the link *suspect* (:attr:`AmqpLink.healthy` is false, so
``/readyz`` says 503); none within ``dead_after`` and the link is aborted and built again on the
next reachable node. A connection the broker blocked (a memory or disk alarm) is suspect too,
but not aborted: the broker is alive, it only refuses to take messages for now.

The owner passes ``on_connected``, which declares what it needs and opens its channels; it runs
after the first connect and again after every reconnect. Pending work of a lost connection is
the owner's to fail (``on_lost``). pika's callback style is wrapped into awaitables here, once:
:meth:`AmqpLink.call` fails fast with :class:`ChannelClosed` when the broker closes the channel
under it (a 406 on a declare ...), and with :class:`NoAnswer` when the broker stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pika
import pika.frame
import pika.spec
import structlog
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from esb.bus.broker.tls import kombu_ssl, pika_parameters, split_url
from esb.bus.errors import BusUnavailable
from esb.bus.tasks import cancel_and_wait

log = structlog.get_logger("esb.bus.connection")

#: A quiet link (nothing received for this long) is probed.
PROBE_INTERVAL = 1.0
#: A probe unanswered for this long makes the link suspect (not ready).
SUSPECT_AFTER = 2.0
#: Default for ``dead_after``: a probe unanswered for this long ends the connection.
DEAD_AFTER = 5.0
#: How long one node may take to open a connection before the next one is tried.
CONNECT_TIMEOUT = 10.0
#: Bytes read from the broker's socket at a time (pika reads 4 KiB). ``recv`` allocates this
#: much each time: kept under glibc's threshold for allocating with mmap (128 KiB).
RECV_BYTES = 64 * 1024
#: A frame's header (type, channel, payload size) and its end octet: the smallest frame is
#: just those (a heartbeat), as long as the protocol header a server answers a wrong version
#: with (b"AMQP" and four octets).
_FRAME_HEADER = struct.Struct(">BHL")
_FRAME_OVERHEAD = pika.spec.FRAME_HEADER_SIZE + pika.spec.FRAME_END_SIZE


def broker_urls(url: str | Sequence[str]) -> list[str]:
    """The nodes a bus URL names: one ``amqp[s]://`` URL, several separated by commas, or a
    list of them. Each is a whole URL (credentials, port, vhost of its own)."""
    parts = [url] if isinstance(url, str) else list(url)
    out = [u.strip() for part in parts for u in part.split(",") if u.strip()]
    if not out:
        raise ValueError("no broker URL given")
    return out


class ChannelClosed(BusUnavailable):
    """The broker closed the channel a call was waiting on; ``code`` is its reply code."""

    def __init__(self, reason: BaseException) -> None:
        self.reason = reason
        self.code: int | None = getattr(reason, "reply_code", None)
        super().__init__(str(reason))


class NoAnswer(BusUnavailable, TimeoutError):
    """The broker did not answer in time (still a ``TimeoutError`` for older callers)."""


class CoalescingConnection(AsyncioConnection):
    """Writes all frames produced in one event-loop turn with a single send, and reads in
    large chunks.

    pika emits every frame with its own write: a publish is three frames (method, header,
    body) and every ack one more, and one syscall per frame was the largest single cost in the
    daemon's profile. Buffering until the end of the turn keeps frame order and adds no delay.

    On the way in, pika reads 4 KiB per ``recv`` and, for every frame it decodes, copies the
    rest of what it holds (``_trim_frame_buffer``): a 10 KiB delivery took three reads, and
    a burst of small ones was copied over and over. Here the transport reads up to
    :data:`RECV_BYTES` at a time and the frames are cut from what was read by their offsets,
    the rest kept once per read.
    """

    _pending_frames: list[bytes] | None = None

    def _proto_connection_made(self, transport: Any) -> None:
        # (an instance attribute: pika's transport classes keep their 4 KiB for others)
        transport._MAX_RECV_BYTES = RECV_BYTES
        super()._proto_connection_made(transport)

    def _on_data_available(self, data_in: bytes) -> None:
        """pika's frame loop (``Connection._on_data_available``), cutting each frame from the
        buffer by its offset instead of copying the rest of the buffer after every frame.

        While a frame is handled, ``_frame_buffer`` still holds the frames before it: data
        comes only from the event loop's reader callback, never from inside a frame's
        handling, so nothing re-enters with it."""
        held = self._frame_buffer
        buf = held + data_in if held else data_in
        self._frame_buffer = buf
        offset, end = 0, len(buf)
        try:
            while end - offset >= _FRAME_OVERHEAD:
                if buf.startswith(b"AMQP", offset):  # a protocol header (a refused version)
                    stop = offset + _FRAME_OVERHEAD
                else:
                    stop = offset + _FRAME_OVERHEAD + _FRAME_HEADER.unpack_from(buf, offset)[2]
                    if stop > end:
                        break
                consumed, value = pika.frame.decode_frame(
                    buf if offset == 0 and stop == end else buf[offset:stop])
                if value is None:  # pragma: no cover - a whole frame is always decoded
                    break
                offset += consumed
                self.bytes_received += consumed
                self._process_frame(value)
                if self._frame_buffer is not buf:
                    return  # the connection was reset meanwhile (closed by a callback)
        finally:
            if self._frame_buffer is buf:
                self._frame_buffer = buf[offset:] if offset else buf

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


def kombu_connection(url: str | Sequence[str], timeout: float = 10.0) -> Any:
    """A kombu connection (the blocking side: declaring, inspecting) that fails over between
    the nodes of ``url`` as :class:`AmqpLink` does."""
    from kombu import Connection

    urls = [split_url(u)[0] for u in broker_urls(url)]
    return Connection(urls if len(urls) > 1 else urls[0], connect_timeout=timeout,
                      ssl=kombu_ssl(broker_urls(url)[0]), failover_strategy="round-robin")


def redact(url: str | Sequence[str]) -> str:
    """The URL (every node of it) without credentials, for logs."""
    nodes = [pika.URLParameters(split_url(one)[0]) for one in broker_urls(url)]
    hosts = ",".join(f"{params.host}:{params.port}" for params in nodes)
    return f"{hosts} vhost {nodes[0].virtual_host}"


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


class AmqpLink:
    def __init__(self, url: str | Sequence[str], *, name: str, heartbeat: int = 30,
                 on_connected: Callable[[AmqpLink], Awaitable[None]],
                 on_lost: Callable[[BaseException], None] | None = None,
                 timeout: float = 10.0, reconnect: bool = True,
                 reconnect_max: float = 10.0, dead_after: float = DEAD_AFTER,
                 probe: bool = True) -> None:
        """``url``: one node or several (:func:`broker_urls`). ``reconnect=False``: no
        background reconnection; the owner calls :meth:`start` again when it needs the link
        (connect on demand). ``reconnect_max`` caps the back-off. ``probe=False``: no liveness
        probe (short-lived links)."""
        self.urls = broker_urls(url)
        self._nodes = [pika_parameters(u) for u in self.urls]  # with TLS from the URL
        for params in self._nodes:
            params.heartbeat = heartbeat
            params.client_properties = {"connection_name": name}
        #: The node connected to last (or to be tried first): a random one at first, so the
        #: links of a fleet spread over the cluster's nodes instead of all losing one node.
        self._node = random.randrange(len(self.urls))
        self.url = self.urls[self._node]
        self.params = self._nodes[self._node]
        self.name = name
        self.dead_after = max(dead_after, SUSPECT_AFTER)
        self._probe_enabled = probe
        self._probe_task: asyncio.Task[None] | None = None
        #: monotonic time the current probe was sent (None: none outstanding)
        self._probe_sent: float | None = None
        self._blocked = False
        #: The live connection was lost: try the next node first.
        self._move_on = False
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
    def healthy(self) -> bool:
        """Connected, and not suspected dead: no probe overdue, not blocked by the broker."""
        if not self._ready.is_set() or self._blocked:
            return False
        sent = self._probe_sent
        return sent is None or time.monotonic() - sent < SUSPECT_AFTER

    @property
    def node(self) -> str:
        """The node this link is (or was last) connected to, without credentials."""
        return redact(self.url)

    def abort(self, reason: str) -> None:
        """End the connection now, without the closing handshake (a silent broker would never
        answer it): pending work fails, and the supervisor connects again — to the next node
        first."""
        conn = self.connection
        if conn is None or conn.is_closed or self._closing:
            return
        log.warning("broker link aborted", link=self.name, node=self.node, reason=reason)
        with contextlib.suppress(Exception):
            conn._terminate_stream(pika.exceptions.StreamLostError(reason))

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
                self._supervisor.add_done_callback(self._supervisor_ended)

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        # A link whose supervisor ended while not closing never reconnects: say so loudly.
        if not self._closing and not task.cancelled() and task.exception() is not None:
            log.error("link supervisor ended; the link will not reconnect", link=self.name,
                      error=repr(task.exception()))

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
                continue
            except asyncio.CancelledError:
                # Only this task's own cancellation (close) may end the supervisor: a
                # cancellation from inside a connect (a future of the connection that died
                # under it) would otherwise end it silently, and the link would never come
                # back.
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    raise
                log.warning("reconnect interrupted", link=self.name, retry_in=delay)
            except Exception as exc:  # the broker may be restarting: keep trying
                log.warning("reconnect failed", link=self.name, error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max)

    async def _connect(self) -> None:
        """Connect to the first node that answers, starting with the one after the node
        connected to last when that connection was lost (it probably died)."""
        self._lost.clear()
        errors = []
        count = len(self._nodes)
        start = self._node + 1 if self._move_on else self._node
        self._move_on = False
        for i in range(count):
            index = (start + i) % count
            try:
                await self._connect_node(index)
                return
            except BusUnavailable as exc:
                if self._closing or count == 1:
                    raise
                errors.append(f"{redact(self.urls[index])}: {exc}")
                log.warning("broker node not reachable; trying the next", link=self.name,
                            node=redact(self.urls[index]), error=str(exc))
        raise BusUnavailable("no broker node reachable: " + "; ".join(errors))

    async def _connect_node(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()
        self._node = index
        self.url, self.params = self.urls[index], self._nodes[index]

        def on_open(conn: AsyncioConnection) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_open_error(conn: AsyncioConnection, exc: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(BusUnavailable(
                    f"cannot connect to the bus at {redact(self.url)}: {connect_reason(exc)}"))

        current = self._current = CoalescingConnection(
            self.params, on_open_callback=on_open, on_open_error_callback=on_open_error,
            on_close_callback=self._on_closed, custom_ioloop=loop)
        try:
            self.connection = await asyncio.wait_for(opened, CONNECT_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(Exception):  # a silent node: stop the attempt
                # With a reason: pika's stack asserts on one ended without (a traceback in
                # the log). Not a StreamLostError, which pika reads as a protocol mismatch.
                current._terminate_stream(pika.exceptions.AMQPConnectionError(
                    f"no answer within {CONNECT_TIMEOUT:g}s"))
            raise BusUnavailable("timed out connecting to the bus") from None
        self._blocked = False
        self._probe_sent = None
        current.add_on_connection_blocked_callback(self._on_blocked)
        current.add_on_connection_unblocked_callback(self._on_unblocked)
        try:
            # Bounded: a node that accepted the connection and then went silent must not
            # hold the link forever (its own calls are bounded by ``timeout`` already).
            await asyncio.wait_for(self._on_connected(self), max(self.timeout * 3, 30.0))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.connection.close()
            if isinstance(exc, TimeoutError):
                raise NoAnswer("the broker did not finish setting up the link") from None
            raise
        self.connects += 1
        self._ready.set()
        if self._probe_enabled and (self._probe_task is None or self._probe_task.done()):
            self._probe_task = loop.create_task(self._watch(), name=f"{self.name} probe")

    def _on_blocked(self, conn: AsyncioConnection, frame: Any) -> None:
        log.warning("broker blocked the connection (resource alarm)", link=self.name,
                    node=self.node)
        self._blocked = True

    def _on_unblocked(self, conn: AsyncioConnection, frame: Any) -> None:
        log.info("broker unblocked the connection", link=self.name, node=self.node)
        self._blocked = False

    async def _watch(self) -> None:
        """The liveness probe (see the module's docstring); one task per link."""
        probe_channel: Channel | None = None
        seen = -1
        while not self._closing:
            await asyncio.sleep(PROBE_INTERVAL)
            conn = self.connection
            if conn is None or not self.connected:
                probe_channel, seen = None, -1
                continue
            received = conn.bytes_received
            if received != seen:  # the broker spoke since the last look: alive
                seen = received
                continue
            if self._blocked:
                continue
            self._probe_sent = time.monotonic()
            try:
                if probe_channel is None or not probe_channel.is_open:
                    probe_channel = await self._probe_call(self.channel())
                await self._probe_call(self.call(probe_channel.basic_qos, prefetch_count=0))
            except asyncio.CancelledError:
                raise
            except NoAnswer:
                if conn is self.connection:
                    self.abort(f"the broker did not answer for {self.dead_after:g}s")
                probe_channel = None
            except Exception:  # the connection went away meanwhile: on_close handles it
                probe_channel = None
            finally:
                self._probe_sent = None
            seen = conn.bytes_received

    async def _probe_call(self, call: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(call, self.dead_after)
        except TimeoutError:
            raise NoAnswer("no answer to the liveness probe") from None

    def _on_closed(self, conn: AsyncioConnection, reason: BaseException) -> None:
        if conn is not self._current:
            # An earlier attempt (its on_connected failed) whose close arrives after a newer
            # connect began: not the live connection's loss.
            return
        self._ready.clear()
        self._probe_sent = None
        self._move_on = len(self._nodes) > 1
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

    async def channel(self, on_close: Callable[[Channel, BaseException], None] | None = None,
                      *, recover: bool = False) -> Channel:
        """A new channel; ``on_close`` is told when it closes. ``recover``: its owner cannot
        go on without it, so when it closes while the connection stays up (a deleted queue,
        a refused declare) the link reconnects whole, which builds everything again."""
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
        ch.add_on_cancel_callback(self._on_cancelled)
        self._closed[ch] = closed
        if on_close is not None:
            ch.add_on_close_callback(on_close)
        if recover:
            ch.add_on_close_callback(self._recover)
        return ch

    def _recover(self, channel: Channel, reason: BaseException) -> None:
        if self._closing or self.connection is None or not self.connection.is_open:
            return  # closing, or closed with its connection: reported there
        log.warning("channel closed; reconnecting", link=self.name, reason=str(reason))
        self.drop()

    def _on_cancelled(self, frame: Any) -> None:
        """The broker cancelled a consumer of this link (its queue went, or the stream member
        it read from): rebuild the link, which declares and subscribes again."""
        if self._closing:
            return
        log.warning("broker cancelled a consumer; reconnecting", link=self.name,
                    node=self.node)
        self.drop()

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

    async def close(self, timeout: float = 2.0) -> None:
        """Close the connection: a graceful close when the broker answers within ``timeout``,
        else the connection is aborted (a silent broker must not hold a stop)."""
        self._closing = True
        self._lost.set()
        for task in (self._supervisor, self._probe_task):
            await cancel_and_wait(task)
        conn = self.connection
        if conn is not None and conn.is_open:
            conn.close()
            deadline = time.monotonic() + timeout
            while not conn.is_closed and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if not conn.is_closed:
                with contextlib.suppress(Exception):
                    conn._terminate_stream(
                        pika.exceptions.StreamLostError("closed: the broker did not answer"))
        self._ready.clear()
