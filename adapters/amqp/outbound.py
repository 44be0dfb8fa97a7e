"""amqp outbound: publish each envelope to a legacy exchange, with publisher confirms.

``send`` returns once the legacy broker confirmed the message (``basic.ack``); ``request``
(request/reply routes) also waits for the legacy system's reply — AMQP RPC with direct
reply-to, see :mod:`esb.adapters.amqp.rpc`. Errors of the publish (both):

* ``basic.nack``, a connection or channel lost before the confirm, no confirm within
  ``timeout``, a broker that cannot be reached → :class:`~esb.bus.errors.TransientError`
  (publishing to an exchange that does not exist closes the channel: transient too, the legacy
  side may not have declared it yet);
* a ``mandatory`` message returned as unroutable (``basic.return`` NO_ROUTE) →
  ``TransientError``, or :class:`~esb.bus.errors.PermanentError` with ``unroutable: permanent``;
* a routing-key template field missing from the envelope → ``PermanentError``.

Mapping back to AMQP properties: ``message_id`` = envelope id, ``correlation_id``, ``type``,
``app_id`` = source, ``content_type`` = ``datacontenttype``, ``timestamp`` = time,
``delivery_mode`` 2 (persistent), headers ``idempotency-key`` (the envelope's key),
``traceparent``, the configured ``headers`` and the ``keep_headers`` taken from ``esbheaders``.
The body is the payload in its own content type — or the whole CloudEvent with
``cloudevents: structured``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pika
import structlog

from esb.adapters.amqp.rpc import DIRECT_REPLY_TO, ReplyWaiters, reply_of
from esb.adapters.amqp.settings import AmqpOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.broker.connection import AmqpLink, NoAnswer, redact
from esb.bus.broker.publisher import ConfirmedPublisher, PublishReturned
from esb.bus.envelope import CLOUDEVENTS_JSON, Envelope
from esb.bus.errors import BusUnavailable, PermanentError, PublishRejected, TransientError
from esb.bus.payload import render
from esb.bus.reply import Reply

log = structlog.get_logger("esb.amqp.outbound")


def render_key(template: str, envelope: Envelope) -> str:
    """``orders.{type}`` → ``orders.order.created``; a missing field is a PermanentError."""
    return render(template, envelope, "routing key")


class AmqpOutbound:
    def __init__(self, settings: AmqpOutboundSettings, ctx: OutboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        url = settings.url.get_secret_value()
        self._where = redact(url)
        # Connected on demand (start, then the first send after a loss), not in the background.
        self._link = AmqpLink(url, name=f"esb outbound {ctx.name}", heartbeat=settings.heartbeat,
                              on_connected=self._open, on_lost=self._on_lost,
                              reconnect=False)
        self._publisher = ConfirmedPublisher()
        self._replies = ReplyWaiters()
        self._lock = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._ensure()
        except TransientError as exc:  # the daemon starts anyway; sends retry the connection
            log.warning("legacy broker not reachable yet", destination=self.ctx.name,
                        error=str(exc))

    async def stop(self) -> None:
        self._publisher.fail_all(TransientError("the destination is stopping"))
        self._replies.fail_all(TransientError("the destination is stopping"))
        await self._link.close()

    async def _ensure(self) -> None:
        if self._publisher.ready:
            return
        async with self._lock:
            if self._publisher.ready:
                return
            try:
                if self._link.connected:  # the channel went (a missing exchange): a new one
                    await self._open(self._link)
                else:
                    await self._link.start()  # opens the channel (on_connected: _open)
            except (BusUnavailable, pika.exceptions.AMQPError) as exc:
                raise TransientError(f"the legacy broker at {self._where} is not available: "
                                     f"{exc}") from None

    async def _open(self, link: AmqpLink) -> None:
        """The confirm channel, consuming its direct replies (for :meth:`request`)."""
        await self._publisher.open(link, on_close=self._on_channel_closed)
        channel = self._publisher.channel
        assert channel is not None
        await link.call(channel.basic_consume, DIRECT_REPLY_TO, self._replies.on_reply,
                        auto_ack=True)

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        self._replies.fail_all(TransientError(
            f"the channel to the legacy broker at {self._where} closed before the reply "
            f"came: {reason}"))

    def _on_lost(self, reason: BaseException) -> None:
        self._publisher.fail_all(TransientError(
            f"the connection to the legacy broker at {self._where} was lost before the "
            f"confirm: {reason}"))
        self._replies.fail_all(TransientError(
            f"the connection to the legacy broker at {self._where} was lost before the "
            f"reply came: {reason}"))

    # -- delivery -----------------------------------------------------------------------------

    def properties(self, envelope: Envelope) -> pika.BasicProperties:
        s = self.settings
        headers: dict[str, Any] = dict(s.headers)
        for name in s.keep_headers:
            if (value := envelope.esbheaders.get(name.lower())) is not None:
                headers[name] = value
        headers["idempotency-key"] = envelope.key
        if envelope.traceparent:
            headers["traceparent"] = envelope.traceparent
        if s.cloudevents == "structured":
            content_type: str | None = CLOUDEVENTS_JSON
        elif envelope.datacontenttype:
            content_type = envelope.datacontenttype
        elif isinstance(envelope.data, bytes):
            content_type = "application/octet-stream"
        else:
            content_type = "application/json"
        return pika.BasicProperties(
            message_id=envelope.id, correlation_id=envelope.correlationid, type=envelope.type,
            app_id=envelope.source, content_type=content_type,
            timestamp=int(envelope.time.timestamp()),
            delivery_mode=2 if s.persistent else 1, headers=headers)

    async def send(self, envelope: Envelope) -> None:
        s = self.settings
        routing_key = render_key(s.routing_key, envelope)
        props = self.properties(envelope)
        body = envelope.to_json() if s.cloudevents == "structured" else envelope.data_bytes()
        await self._publish(routing_key, body, props)

    async def request(self, envelope: Envelope) -> Reply:
        """Request/reply (:mod:`esb.adapters.amqp.rpc`): publish with ``reply_to`` and a
        correlation id of this call, and return the legacy system's reply."""
        s = self.settings
        routing_key = render_key(s.routing_key, envelope)
        props = self.properties(envelope)
        body = envelope.to_json() if s.cloudevents == "structured" else envelope.data_bytes()
        if envelope.correlationid:  # the conversation's id rides in a header instead
            props.headers["correlation-id"] = envelope.correlationid
        props.delivery_mode = 1  # it lives no longer than its caller waits
        if envelope.esbdeadline is not None:
            props.expiration = str(max(1, envelope.esbdeadline - int(time.time() * 1000)))
        cid, answer = self._replies.expect()
        props.correlation_id, props.reply_to = cid, DIRECT_REPLY_TO
        try:
            await self._publish(routing_key, body, props)
            got, reply_body = await answer
        finally:
            self._replies.forget(cid)  # a reply coming after this is dropped
        return reply_of(got, reply_body, s.reply_status_header, s.reply_error_header)

    async def _publish(self, routing_key: str, body: bytes,
                       props: pika.BasicProperties) -> None:
        """Publish and wait for the legacy broker's confirm; errors translated (module doc)."""
        s = self.settings
        await self._ensure()
        try:
            await self._publisher.publish(s.exchange, routing_key, body, props,
                                          mandatory=s.mandatory, timeout=s.timeout)
        except NoAnswer:
            raise TransientError(f"the legacy broker at {self._where} did not confirm within "
                                 f"{s.timeout:g}s") from None
        except PublishReturned as exc:
            where = f"exchange {s.exchange!r}" if s.exchange else "the default exchange"
            message = (f"the legacy broker returned the message as unroutable ({exc.reply}): "
                       f"no queue is bound for routing key {routing_key!r} on {where}")
            kind = PermanentError if s.unroutable == "permanent" else TransientError
            raise kind(message) from None
        except PublishRejected:
            raise TransientError("the legacy broker refused the message (basic.nack)") from None
        except BusUnavailable as exc:  # the channel or connection went away under us
            raise TransientError(f"publishing to the legacy broker at {self._where} failed: "
                                 f"{exc}") from None
