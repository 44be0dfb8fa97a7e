"""Idempotency keys shared between instances, through the bus itself.

Each instance appends ``{key, id, destinations}`` for every envelope it accepted with an
``Idempotency-Key`` to the stream ``<prefix>.idempotency`` (``x-max-age`` = the window), and
tails it from ``now - window`` — so a repeated request within the window is answered with the
original id by any instance, including one started after the original was accepted. It is
best-effort by design: two instances taking the *same* key in the same instant may both
publish, and the destination's own de-duplication by the same key covers that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pika
import structlog
from pika.channel import Channel

from esb.bus.broker.connection import AmqpLink
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
        self._pub: Channel | None = None
        self._last_offset: int | None = None
        #: Records taken while not connected, sent on (re)connect (bounded: best effort).
        self._backlog: deque[bytes] = deque(maxlen=100_000)

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def start(self) -> None:
        await self._link.start()

    async def close(self) -> None:
        await self._link.close()

    async def _on_connected(self, link: AmqpLink) -> None:
        ch = await link.channel()
        await link.call(ch.queue_declare, self.queue, durable=True, arguments={
            "x-queue-type": "stream", "x-max-age": f"{max(1, int(self.window))}s",
            "x-stream-max-segment-size-bytes": 8 * 1024 * 1024})
        await link.call(ch.basic_qos, prefetch_count=1000)
        # Resume after the last record seen; on first start, from the window's beginning.
        offset: Any = (self._last_offset + 1 if self._last_offset is not None
                       else datetime.now() - timedelta(seconds=self.window))
        ch.basic_consume(self.queue, self._on_message, auto_ack=False,
                         arguments={"x-stream-offset": offset})
        self._pub = ch
        while self._backlog:
            self._send(ch, self._backlog.popleft())

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

    def publish(self, key: str, record: dict[str, Any]) -> None:
        """Announce an accepted key (fire and forget: never slows the accept path down)."""
        body = orjson.dumps({**record, "key": key, "by": self.instance})
        ch = self._pub
        if ch is None or not ch.is_open:
            self._backlog.append(body)
            return
        self._send(ch, body)

    def _send(self, ch: Channel, body: bytes) -> None:
        ch.basic_publish("", self.queue, body, pika.BasicProperties(delivery_mode=2))
