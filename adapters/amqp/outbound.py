"""amqp outbound: publish each envelope to a legacy exchange, with publisher confirms.

``send`` returns once the legacy broker confirmed the message (``basic.ack``). Errors:

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
import re
from dataclasses import dataclass
from typing import Any

import pika
import structlog
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from esb.adapters.amqp import connection as amqp
from esb.adapters.amqp.settings import AmqpOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import CLOUDEVENTS_JSON, Envelope
from esb.bus.errors import PermanentError, TransientError

log = structlog.get_logger("esb.amqp.outbound")

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def render_key(template: str, envelope: Envelope) -> str:
    """``orders.{type}`` → ``orders.order.created``; a missing field is a PermanentError."""

    def value(m: re.Match[str]) -> str:
        path = m.group(1).split(".")
        current: Any = envelope.data if path[0] == "data" else getattr(envelope, path[0], None)
        for part in path[1:]:
            current = current.get(part) if isinstance(current, dict) else None
        if current is None or isinstance(current, (dict, list)):
            raise PermanentError(f"routing key field {{{m.group(1)}}} is missing from the "
                                 "envelope")
        return str(current)

    return _FIELD.sub(value, template)


@dataclass
class _Pending:
    future: asyncio.Future[None]
    key: tuple[str | None, str]
    returned: str | None = None


class _ConfirmChannel:
    """One channel in confirm mode and the publishes waiting for its confirms."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.tag = 0
        self.pending: dict[int, _Pending] = {}

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self.pending if t <= method.delivery_tag] if method.multiple \
            else [method.delivery_tag]
        for tag in tags:
            p = self.pending.pop(tag, None)
            if p is None or p.future.done():
                continue
            if not acked:
                p.future.set_exception(TransientError("the legacy broker refused the message "
                                                      "(basic.nack)"))
            elif p.returned:
                p.future.set_exception(_Returned(p.returned))
            else:
                p.future.set_result(None)

    def on_return(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        # basic.return precedes the message's ack: mark the oldest matching publish.
        key = (props.message_id, method.routing_key)
        for tag in sorted(self.pending):
            p = self.pending[tag]
            if p.key == key and p.returned is None:
                p.returned = f"{method.reply_code} {method.reply_text}"
                return

    def fail(self, exc: Exception) -> None:
        pending, self.pending = self.pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)


class _Returned(Exception):
    """The broker returned a mandatory message (no queue bound)."""


class AmqpOutbound:
    def __init__(self, settings: AmqpOutboundSettings, ctx: OutboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        url = settings.url.get_secret_value()
        self._params = amqp.parameters(url, heartbeat=settings.heartbeat,
                                       name=f"esb outbound {ctx.name}")
        self._where = amqp.describe(url)
        self._conn: AsyncioConnection | None = None
        self._confirm: _ConfirmChannel | None = None
        self._lock: asyncio.Lock | None = None
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._closing = False
        try:
            await self._ensure()
        except TransientError as exc:  # the daemon starts anyway; sends retry the connection
            log.warning("legacy broker not reachable yet", destination=self.ctx.name,
                        error=str(exc))

    async def stop(self) -> None:
        self._closing = True
        if self._confirm is not None:
            self._confirm.fail(TransientError("the destination is stopping"))
        conn, self._conn, self._confirm = self._conn, None, None
        await amqp.close_and_wait(conn)

    async def _ensure(self) -> _ConfirmChannel:
        confirm = self._confirm
        if confirm is not None and confirm.channel.is_open:
            return confirm
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            confirm = self._confirm
            if confirm is not None and confirm.channel.is_open:
                return confirm
            try:
                if self._conn is None or not self._conn.is_open:
                    self._conn = await amqp.connect(
                        self._params, on_closed=self._on_closed,
                        what=f"the legacy broker at {self._where}")
                channel = await amqp.open_channel(self._conn, on_closed=self._on_channel_closed)
                confirm = _ConfirmChannel(channel)
                await amqp.call(channel, channel.confirm_delivery,
                                ack_nack_callback=confirm.on_confirm)
                channel.add_on_return_callback(confirm.on_return)
            except amqp.AmqpUnavailable as exc:
                raise TransientError(str(exc)) from None
            self._confirm = confirm
            return confirm

    def _on_closed(self, conn: AsyncioConnection, reason: BaseException) -> None:
        if self._confirm is not None:
            self._confirm.fail(TransientError(
                f"the connection to the legacy broker at {self._where} was lost before the "
                f"confirm: {reason}"))
        if conn is self._conn:
            self._conn = None
            self._confirm = None

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        confirm = self._confirm
        if confirm is not None and confirm.channel is channel:
            confirm.fail(TransientError(f"the legacy broker closed the channel: {reason}"))
            self._confirm = None

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
        confirm = await self._ensure()
        confirm.tag += 1
        tag = confirm.tag
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        confirm.pending[tag] = _Pending(future, (props.message_id, routing_key))
        try:
            confirm.channel.basic_publish(s.exchange, routing_key, body, props,
                                          mandatory=s.mandatory)
        except Exception as exc:  # the channel or connection went away under us
            confirm.pending.pop(tag, None)
            raise TransientError(f"publishing to the legacy broker at {self._where} failed: "
                                 f"{type(exc).__name__}") from None
        try:
            await asyncio.wait_for(asyncio.shield(future), s.timeout)
        except TimeoutError:
            confirm.pending.pop(tag, None)
            future.cancel()
            raise TransientError(f"the legacy broker at {self._where} did not confirm within "
                                 f"{s.timeout:g}s") from None
        except _Returned as exc:
            where = f"exchange {s.exchange!r}" if s.exchange else "the default exchange"
            message = (f"the legacy broker returned the message as unroutable ({exc}): no "
                       f"queue is bound for routing key {routing_key!r} on {where}")
            kind = PermanentError if s.unroutable == "permanent" else TransientError
            raise kind(message) from None
