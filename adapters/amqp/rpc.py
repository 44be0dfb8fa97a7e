"""amqp outbound as a request/reply destination: RPC with a legacy system over its broker.

``AmqpOutbound.request`` publishes the request like ``send`` does (confirmed, ``mandatory``)
with ``reply_to`` = :data:`DIRECT_REPLY_TO` (RabbitMQ's direct reply-to: no reply queue to
declare or clean up; the replies come back on the channel the requests went out on) and a
``correlation_id`` made for that one call, then waits for the reply carrying it. The legacy
responder answers to ``reply_to`` and copies ``correlation_id``, as every AMQP RPC server does.

Waiting is bounded by the runtime (each call's limit is the smaller of ``delivery.timeout`` and
the time the caller still waits); a call that gave up forgets its correlation id, so a reply
coming later is dropped here — it can never reach another caller. The request's ``expiration``
is that time left too: the legacy queue drops a request nobody waits for any more.

A reply (:func:`reply_of`) becomes a :class:`~esb.bus.reply.Reply`: the body, its
``content_type``, its AMQP headers, and a status read from the ``reply_status_header`` header
(HTTP meaning; none: 200). Errors, translated here::

    reply with an error header, or a status ≥ 400  → TransientError for 408/425/429/5xx,
                                                     else PermanentError (status kept: a 404
                                                     reaches a REST caller as 404)
    status header that is no status (100-599)      → PermanentError (a bad answer: 502)
    connection or channel lost while waiting       → TransientError
    no reply before the limit                      → the runtime's timeout (504 to the caller)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog

from esb.adapters.http import is_transient_status
from esb.bus.errors import PermanentError, TransientError
from esb.bus.reply import Reply

log = structlog.get_logger("esb.amqp.rpc")

#: RabbitMQ's pseudo-queue for direct replies (consumed with auto-ack on the request channel).
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

#: Characters of an error reply's body quoted in the error.
_QUOTED = 200


class ReplyWaiters:
    """The calls of one outbound side waiting for their replies, by correlation id."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[Any, bytes]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self) -> tuple[str, asyncio.Future[tuple[Any, bytes]]]:
        """A fresh correlation id and the future its reply (properties, body) resolves."""
        cid = uuid.uuid4().hex
        future: asyncio.Future[tuple[Any, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = future
        return cid, future

    def forget(self, cid: str) -> None:
        self._waiting.pop(cid, None)

    def on_reply(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        """pika's consumer callback for :data:`DIRECT_REPLY_TO`."""
        future = self._waiting.pop(props.correlation_id or "", None)
        if future is None or future.done():
            log.info("reply for a call no longer waiting dropped",
                     correlation_id=props.correlation_id)
            return
        future.set_result((props, body))

    def fail_all(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)


def reply_of(props: Any, body: bytes, status_header: str | None,
             error_header: str | None) -> Reply:
    """The legacy system's reply as a :class:`Reply`, or the error it means (module doc)."""
    headers = {str(k): header_text(v) for k, v in (props.headers or {}).items()}
    status: int | None = None
    raw = headers.pop(status_header, None) if status_header else None
    if raw is not None:
        status = _status(raw)
        if status is None:
            raise PermanentError(f"bad reply from the legacy system: header {status_header}="
                                 f"{raw[:_QUOTED]!r} is not a status (100-599)")
    error = headers.pop(error_header, None) if error_header else None
    if error is not None or (status is not None and status >= 400):
        detail = error or body[:_QUOTED].decode("utf-8", "replace") or "(no detail)"
        kind = TransientError if status is not None and is_transient_status(status) \
            else PermanentError
        raise kind(f"the legacy system answered {status if status else 'an error'}: "
                   f"{detail}", status=status)
    return Reply(status or 200, headers, body, props.content_type)


def _status(raw: str) -> int | None:
    try:
        status = int(raw.strip())
    except ValueError:
        return None
    return status if 100 <= status <= 599 else None


def header_text(value: Any) -> str:
    """An AMQP header value as text (bytes read as UTF-8, anything else as ``str``)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
