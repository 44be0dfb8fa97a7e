"""Reading a RabbitMQ stream: declaring it, and a tail that resumes where it left off.

The route store, the trace and the idempotency log each keep a stream on the bus and read it
over an :class:`~esb.bus.broker.connection.AmqpLink`. What they share is here: the declare
(``x-queue-type: stream``), and :class:`StreamTail`, a consumer that starts at a given offset
(``first``, a timestamp, a number) and, when started again after a reconnect, resumes after
the last offset it read, so nothing is missed or read twice. Deliveries are acked as they
arrive (a stream needs acks to keep the consumer's credit flowing). :func:`append` writes one
record and waits for the broker's confirm.

A stream's ``queue.declare-ok`` reports no length, so "have I read everything appended before
now?" is answered with a :class:`SyncMarker`: the reader appends a small marker record and reads
until it reads that marker back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pika.channel import Channel

from esb.bus.broker.connection import AmqpLink, NoAnswer
from esb.bus.broker.publisher import ConfirmedPublisher, PublishReturned
from esb.bus.errors import BusError, BusUnavailable, PublishRejected

#: Where a stream consumer starts: ``first``/``last``/``next``, an offset, or a timestamp.
Offset = str | int | datetime
#: A record read: (its offset, or None when the broker gave none; its properties; its body).
OnRecord = Callable[[int | None, Any, bytes], None]


async def declare_stream(link: AmqpLink, channel: Channel, queue: str,
                         arguments: Mapping[str, Any] | None = None) -> None:
    """Declare the durable stream ``queue``; ``arguments`` are its further ``x-`` arguments
    (retention, segment size). A queue of that name with other arguments closes ``channel``
    (``ChannelClosed`` 406)."""
    await link.call(channel.queue_declare, queue, durable=True,
                    arguments={**(arguments or {}), "x-queue-type": "stream"})


async def append(publisher: ConfirmedPublisher, queue: str, body: bytes, props: Any, *,
                 timeout: float, what: str, on_returned: Callable[[], None] | None = None
                 ) -> None:
    """Publish one record (``what``, for errors: "a trace batch") to the stream ``queue`` and
    wait for the broker's confirm: BusUnavailable when none came, PublishRejected when the
    broker refused it or returned it (no such queue: ``on_returned`` is called first)."""
    try:
        await publisher.publish("", queue, body, props, timeout=timeout)
    except NoAnswer:
        raise BusUnavailable(f"the broker did not confirm {what}") from None
    except PublishReturned as exc:
        if on_returned is not None:
            on_returned()
        raise PublishRejected(f"{queue} did not take {what} ({exc.reply})") from None


class StreamTail:
    """Reads ``queue`` and hands each record to ``on_record``; see the module docs."""

    def __init__(self, queue: str, on_record: OnRecord, *, prefetch: int) -> None:
        self.queue = queue
        self.prefetch = prefetch
        #: The offset of the last record read; None before the first.
        self.last_offset: int | None = None
        self._on_record = on_record

    async def follow(self, link: AmqpLink, channel: Channel, start: Offset) -> Offset:
        """Consume on ``channel``: from ``start`` the first time, after the last record read
        when one was. Returns where it starts."""
        offset = start if self.last_offset is None else self.last_offset + 1
        await link.call(channel.basic_qos, prefetch_count=self.prefetch)
        await link.call(channel.basic_consume, self.queue, self._on_message, auto_ack=False,
                        arguments={"x-stream-offset": offset})
        return offset

    def _on_message(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        if channel.is_open:
            channel.basic_ack(method.delivery_tag)
        offset = (props.headers or {}).get("x-stream-offset")
        if not isinstance(offset, int):
            offset = None
        elif self.last_offset is not None and offset <= self.last_offset:
            return  # already read before a reconnect
        else:
            self.last_offset = offset
        self._on_record(offset, props, body)


class SyncMarker:
    """One "read to now" of a stream: append :attr:`body` (``{"kind": "sync", "id", "by",
    "at"}``), hand every sync record read to :meth:`read`, and :meth:`wait`."""

    def __init__(self, by: str) -> None:
        self.id = uuid.uuid4().hex
        self.body = orjson.dumps({"kind": "sync", "id": self.id, "by": by,
                                  "at": datetime.now(UTC).isoformat()})
        self._back: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def read(self, body: bytes) -> bool:
        """A sync record was read; true when it is this marker."""
        if self.id.encode() not in body:
            return False
        if not self._back.done():
            self._back.set_result(None)
        return True

    def fail(self, exc: BaseException) -> None:
        """Stop waiting: :meth:`wait` raises ``exc``."""
        if not self._back.done():
            self._back.set_exception(exc)

    async def wait(self, queue: str, timeout: float, *, closed: asyncio.Future[Any] | None = None,
                   error: type[BusError] = BusUnavailable, hint: str = "") -> None:
        """Return once the marker was read back. Raises ``error`` after ``timeout`` (its text
        ends with ``hint``), BusUnavailable when ``closed`` (the reading channel's) completes
        first, and what :meth:`fail` was given."""
        waiting = {self._back} if closed is None else {self._back, closed}
        done, _ = await asyncio.wait(waiting, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._back in done:
            return self._back.result()
        self._back.cancel()
        if closed is not None and closed in done:
            raise BusUnavailable(f"reading {queue} failed: {closed.result()}")
        raise error(f"could not read {queue} to its end within {timeout:g}s{hint}")
