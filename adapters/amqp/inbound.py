"""amqp inbound: consume a legacy system's queue; each message → one envelope.

Mapping of the AMQP basic properties:

=================  ==========================================================================
``message_id``     ``id`` (generated when absent) and ``idempotencykey`` when present
``type``           ``type`` (else the ``type`` setting, else the routing key, else
                   ``<source>.received``)
``correlation_id`` ``correlationid``
``content_type``   ``datacontenttype`` (else the ``content_type`` setting); the body becomes
                   ``data``: parsed JSON for JSON types, text for ``text/*`` and XML, bytes
                   otherwise. ``application/cloudevents+json`` is read as a whole CloudEvent.
``app_id``         ``source`` (else the ``source`` setting, else the source name)
``timestamp``      ``time``
``headers``        ``esbheaders`` for the names listed in ``headers`` (``traceparent`` always)
=================  ==========================================================================

Acknowledgement: a message is acked only after ``accept()`` returned (the bus confirmed it),
on the channel it came from. When the bus cannot take it (``BusError``) the message is handed
back with ``basic.nack(requeue=True)`` after ``retry_delay``, so a bus outage neither loses nor
spins messages. A message that cannot become an envelope (JSON that does not parse, text that is
not UTF-8, an invalid CloudEvent) is rejected with ``basic.reject(requeue=False)``: RabbitMQ
moves it to the queue's dead-letter exchange when the legacy queue has one (``x-dead-letter-
exchange`` argument or policy) and drops it otherwise — a warning with its message id and the
reason is logged either way (never the body). Requeueing it would loop forever.

Connection loss: unacked messages go back to the legacy queue (the broker does that); the side
reconnects with backoff (0.5 s doubling to ``reconnect_max``) and consumes again. A missing queue
(``declare: false``) is logged and retried the same way: the legacy system may create it later.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pika.channel import Channel
from pika.spec import Basic, BasicProperties
from pydantic import ValidationError

from esb.adapters.amqp.rpc import header_text
from esb.adapters.amqp.settings import AmqpInboundSettings
from esb.adapters.spec import InboundContext
from esb.bus.broker.connection import AmqpLink, ChannelClosed, redact
from esb.bus.envelope import CLOUDEVENTS_JSON, Envelope
from esb.bus.errors import BusError, BusUnavailable
from esb.bus.payload import PayloadError, decode, loads_json, media_type

log = structlog.get_logger("esb.amqp.inbound")


class NotAnEnvelope(Exception):
    """The message cannot become an envelope (the reason is safe to log)."""


class AmqpInbound:
    routes: list[Any]

    def __init__(self, settings: AmqpInboundSettings, ctx: InboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.routes = []
        url = settings.url.get_secret_value()
        self._where = redact(url)
        self._link = AmqpLink(url, name=f"esb inbound {ctx.name}", heartbeat=settings.heartbeat,
                              on_connected=self._on_connected,
                              reconnect_max=settings.reconnect_max)
        self._headers = {h.lower() for h in settings.headers}
        self._starting: asyncio.Task[None] | None = None
        self._channel: Channel | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def connects(self) -> int:
        """Connections that got as far as consuming (tests watch reconnects)."""
        return self._link.connects

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        # In the background: the daemon starts even while the legacy broker is away.
        if self._starting is None:
            self._starting = asyncio.create_task(self._start(),
                                                 name=f"esb-amqp-{self.ctx.name}")

    async def _start(self) -> None:
        try:
            await self._link.start()  # keeps reconnecting (with back-off) from here on
        except BusUnavailable as exc:
            log.warning("cannot consume from the legacy broker yet; retrying",
                        source=self.ctx.name, broker=self._where, queue=self.settings.queue,
                        error=str(exc))

    async def stop(self) -> None:
        starting, self._starting = self._starting, None
        if starting is None:
            return
        # A first connect still under way ends by itself (bounded): cancelling it could leave
        # a connection that opens later and is never closed.
        _, pending = await asyncio.wait({starting}, timeout=15.0)
        for t in pending:
            t.cancel()
        # Messages still being accepted: give them a moment, then leave them unacked (the
        # broker requeues them when the connection closes).
        if self._handlers:
            _, pending = await asyncio.wait(set(self._handlers), timeout=2.0)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self._link.close()
        self._channel = None

    async def _on_connected(self, link: AmqpLink) -> None:
        """Check (or declare) the queue and consume it; again after every reconnect."""
        s = self.settings
        channel = await link.channel(on_close=self._on_channel_closed)
        if s.declare:
            await link.call(channel.queue_declare, s.queue, durable=s.durable,
                            arguments=s.arguments or None)
        else:
            try:
                await link.call(channel.queue_declare, s.queue, passive=True)
            except ChannelClosed as exc:
                raise BusUnavailable(f"queue {s.queue!r} is not there (declare: false leaves "
                                     f"the legacy topology alone): {exc}") from None
        await link.call(channel.basic_qos, prefetch_count=s.prefetch)
        channel.basic_consume(s.queue, self._on_message, auto_ack=False)
        self._channel = channel
        log.info("consuming from the legacy broker", source=self.ctx.name,
                 broker=self._where, queue=s.queue)

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        conn = self._link.connection
        if channel is not self._channel or self._link.closing or conn is None \
                or not conn.is_open:
            return  # closing with its connection: the link reconnects by itself
        # A channel error (a deleted queue ...) is recovered by reconnecting whole.
        log.warning("legacy broker closed the channel; reconnecting", source=self.ctx.name,
                    reason=str(reason))
        self._link.drop()

    def _on_message(self, channel: Channel, method: Basic.Deliver, props: BasicProperties,
                    body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(channel, method, props, body))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    # -- one message --------------------------------------------------------------------------

    async def _handle(self, channel: Channel, method: Basic.Deliver, props: BasicProperties,
                      body: bytes) -> None:
        tag = method.delivery_tag
        try:
            envelope = self.envelope(method, props, body)
        except NotAnEnvelope as exc:
            log.warning("legacy message is not an envelope; rejected (to the queue's "
                        "dead-letter exchange if it has one)", source=self.ctx.name,
                        queue=self.settings.queue, message_id=props.message_id,
                        error=str(exc))
            self.ctx.rejected("not-an-envelope")
            if channel.is_open:
                channel.basic_reject(tag, requeue=False)
            return
        try:
            await self.ctx.accept(envelope)
        except BusError as exc:
            self.ctx.rejected("bus-unavailable")
            await self._hand_back(channel, tag, exc)
            return
        except Exception as exc:  # a bug must not lose the message either
            log.error("accept failed unexpectedly", source=self.ctx.name,
                      error=f"{type(exc).__name__}: {exc}")
            await self._hand_back(channel, tag, exc)
            return
        # Acked only now, and only on the channel it came from: after a reconnect the broker
        # has requeued it already (delivery tags are per channel).
        if channel.is_open:
            channel.basic_ack(tag)

    async def _hand_back(self, channel: Channel, tag: int, exc: Exception) -> None:
        log.warning("the bus did not take a legacy message; handing it back",
                    source=self.ctx.name, error=str(exc), retry_in=self.settings.retry_delay)
        try:
            await asyncio.sleep(self.settings.retry_delay)  # so nothing spins
        finally:
            if channel.is_open:
                channel.basic_nack(tag, requeue=True)

    def envelope(self, method: Basic.Deliver, props: BasicProperties, body: bytes) -> Envelope:
        """The envelope a legacy message maps to (see the module docs)."""
        s = self.settings
        limit = s.max_body or self.ctx.max_body
        if len(body) > limit:
            raise NotAnEnvelope(f"the body of {len(body)} bytes exceeds max_body ({limit})")
        content_type = props.content_type or s.content_type
        media, _ = media_type(content_type)
        headers = props.headers or {}
        kept = {str(k).lower(): header_text(v) for k, v in headers.items()
                if "*" in self._headers or str(k).lower() in self._headers}
        attrs: dict[str, Any] = {}
        if props.correlation_id:
            attrs["correlationid"] = props.correlation_id
        if tp := headers.get("traceparent"):
            attrs["traceparent"] = header_text(tp)
        if media == CLOUDEVENTS_JSON:
            try:
                env = Envelope.from_cloudevent(loads_json(body, self.ctx.json_depth))
            except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
                raise NotAnEnvelope(f"not a valid structured CloudEvent: {exc}") from None
            if kept:
                env = env.model_copy(update={"esbheaders": {**env.esbheaders, **kept}})
            return env
        if props.message_id:
            attrs["id"] = props.message_id
            attrs["idempotencykey"] = props.message_id[:200]
        if props.timestamp:
            with contextlib.suppress(ValueError, OverflowError, OSError):
                attrs["time"] = datetime.fromtimestamp(props.timestamp, UTC)
        try:
            return Envelope(
                source=props.app_id or s.source or self.ctx.name,
                type=props.type or s.type or method.routing_key or f"{self.ctx.name}.received",
                datacontenttype=content_type, data=_decode(content_type, body,
                                                            self.ctx.json_depth),
                esbheaders=kept, **attrs)
        except ValidationError as exc:
            raise NotAnEnvelope(f"invalid attributes: {exc.errors()[0]['msg']}") from None


def _decode(content_type: str | None, body: bytes, json_depth: int) -> Any:
    try:
        return decode(body, content_type, json_depth=json_depth)
    except PayloadError as exc:
        raise NotAnEnvelope(exc.detail) from None
