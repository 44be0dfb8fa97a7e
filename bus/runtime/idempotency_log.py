"""Idempotency keys shared between instances, through the bus itself.

Each instance appends ``{key, id, destinations}`` for every envelope it accepted with an
``Idempotency-Key`` to the stream ``<prefix>.idempotency`` (``x-max-age`` = the window), and
tails it from ``now - window`` — so a repeated request within the window is answered with the
original id by any instance, including one started after the original was accepted.

A record is confirmed by the broker before the sender is answered, so once a sender holds a
202 every instance will learn its key (an instance killed before that never answered, and
the sender's retry is the first the others see). When the broker does not confirm within 5 s
(or the connection is down) the sender is answered anyway — its envelope is safe already —
and the record is kept and sent again within a second (or on reconnect); until then another
instance may take a repeat as new. What this cannot do without a lock service:
two instances taking the *same* key in the same instant (before either record went round)
both publish; the destination's own de-duplication by the same key covers that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pika
import structlog
from pika.channel import Channel

from esb.bus.broker.connection import AmqpLink
from esb.bus.broker.publisher import ConfirmedPublisher
from esb.bus.broker.topology import Topology

log = structlog.get_logger("esb.idempotency")

Record = Callable[[str, dict[str, Any]], None]


class IdempotencyLog:
    def __init__(self, url: str, prefix: str, instance: str, window: float,
                 on_record: Record) -> None:
        self.queue = Topology(prefix).idempotency_stream
        self.instance = instance
        self.window = window
        self.on_record = on_record
        self._link = AmqpLink(url, name=f"esb idempotency {instance}",
                              on_connected=self._on_connected)
        self._publisher = ConfirmedPublisher()
        self._ids = itertools.count()
        self._last_offset: int | None = None
        #: Records taken while not connected, sent on (re)connect (bounded).
        self._backlog: deque[bytes] = deque(maxlen=100_000)
        self._resend: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def start(self) -> None:
        if self._resend is None:
            self._resend = asyncio.get_running_loop().create_task(self._resend_backlog())
        await self._link.start()

    async def close(self) -> None:
        if self._resend is not None:
            self._resend.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resend
            self._resend = None
        await self._link.close()

    async def _resend_backlog(self) -> None:
        """Records a missing confirm left behind go out within a second, not only with the
        next keyed message (a quiet source would otherwise keep them here)."""
        while True:
            await asyncio.sleep(1.0)
            if self._backlog and self._publisher.ready:
                await self._flush()

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if not self._link.closing:
            log.warning("idempotency channel closed; reconnecting", reason=str(reason))
            self._link.drop()

    async def _on_connected(self, link: AmqpLink) -> None:
        ch = await link.channel(on_close=self._on_channel_closed)
        await link.call(ch.queue_declare, self.queue, durable=True, arguments={
            "x-queue-type": "stream", "x-max-age": f"{max(1, int(self.window))}s",
            "x-stream-max-segment-size-bytes": 8 * 1024 * 1024})
        await link.call(ch.basic_qos, prefetch_count=1000)
        # Resume after the last record seen; on first start, from the window's beginning.
        offset: Any = (self._last_offset + 1 if self._last_offset is not None
                       else datetime.now() - timedelta(seconds=self.window))
        ch.basic_consume(self.queue, self._on_message, auto_ack=False,
                         arguments={"x-stream-offset": offset})
        await self._publisher.open(link)
        await self._flush()

    def _on_message(self, ch: Channel, method: Any, props: Any, body: bytes) -> None:
        headers = props.headers or {}
        self._last_offset = headers.get("x-stream-offset", self._last_offset)
        ch.basic_ack(method.delivery_tag, multiple=True)
        try:
            record = orjson.loads(body)
            if record.get("by") != self.instance:
                self.on_record(record["key"], record)
        except Exception as exc:  # a bad record must not stop the tail
            log.warning("bad idempotency record skipped", error=str(exc))

    async def publish(self, key: str, record: dict[str, Any]) -> None:
        """Announce an accepted key and wait for the broker's confirm. Never raises: the
        envelope itself is safe already, so a record that cannot be sent now (no connection,
        no confirm within 5 s) is kept and sent on reconnect rather than failing the sender."""
        body = orjson.dumps({**record, "key": key, "by": self.instance})
        if not self._publisher.ready:
            self._backlog.append(body)
            return
        try:
            await self._send(body)
        except Exception as exc:
            log.warning("idempotency record not confirmed; kept to be sent again",
                        error=str(exc))
            self._backlog.append(body)
            return
        if self._backlog:  # records kept after a missing confirm go out with the next one
            await self._flush()

    async def _flush(self) -> None:
        while self._backlog and self._publisher.ready:
            body = self._backlog.popleft()
            try:
                await self._send(body)
            except Exception:
                self._backlog.appendleft(body)
                return

    async def _send(self, body: bytes) -> None:
        props = pika.BasicProperties(delivery_mode=2,
                                     message_id=f"{self.instance}:{next(self._ids)}")
        await self._publisher.publish("", self.queue, body, props, timeout=5)
