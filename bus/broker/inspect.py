"""Browsing and draining a RabbitMQ queue with kombu: the operator's tools for the dead-letter
and unroutable queues (blocking, low rate; run in a worker thread).

Browsing takes messages without acknowledging them and closes the channel, which puts every
one back at its place in the queue. Taking (for replay) acknowledges a message only after the
caller's handler has re-published it with a confirm, so an interrupted replay loses nothing: the
worst case is a message both replayed and still in the queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from esb.bus.broker.connection import kombu_connection
from esb.bus.deadletter import malformed
from esb.bus.envelope import Envelope


def _envelope(body: Any) -> Envelope:
    raw = body if isinstance(body, (bytes, bytearray)) else str(body).encode()
    try:
        return Envelope.from_json(raw)
    except Exception as exc:  # keep what is there, readable, rather than hide it
        return malformed(bytes(raw), exc)


class QueueInspector:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    @contextlib.contextmanager
    def _channel(self) -> Iterator[Any]:
        """A channel on a connection of its own, closed after use: the messages taken on it
        and not acked return to their queue, in place."""
        with (kombu_connection(self.url, self.timeout) as conn,
              contextlib.closing(conn.channel()) as channel):
            yield channel

    def browse(self, queue: str, limit: int) -> list[Envelope]:
        out: list[Envelope] = []
        with self._channel() as channel:
            while len(out) < limit:
                msg = channel.basic_get(queue=queue, no_ack=False)
                if msg is None:
                    break
                out.append(_envelope(msg.body))
        return out

    def take(self, queue: str, select: Callable[[Envelope], bool],
             handle: Callable[[Envelope], None], limit: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
        """One pass over the queue: ``handle`` every selected envelope, then ack it. Returns
        (handled, left). A raising ``handle`` stops the pass; that message stays.

        ``progress(scanned, total)`` follows every message looked at, selected or not:
        ``total`` is the queue's depth when the pass began, which is all that is known
        without reading every message first (how many a filter selects is not)."""
        handled = seen = 0
        with self._channel() as channel:
            total = channel.queue_declare(queue=queue, passive=True).message_count
            while seen < total and (limit is None or handled < limit):
                msg = channel.basic_get(queue=queue, no_ack=False)
                if msg is None:
                    break
                seen += 1
                env = _envelope(msg.body)
                if select(env):
                    handle(env)
                    channel.basic_ack(msg.delivery_tag)
                    handled += 1
                if progress:
                    progress(seen, total)
        return handled, total - handled

    def purge(self, queue: str) -> int:
        with self._channel() as channel:
            return int(channel.queue_purge(queue=queue) or 0)
