"""A tiny legacy AMQP RPC server: consumes one queue in a thread of its own and answers each
request to its ``reply_to`` with its ``correlation_id``, as AMQP RPC servers do.

``answer(props, body)`` returns ``(delay, headers, body, content_type)`` — the reply, sent
``delay`` seconds later (without holding up the next request) — or None: no reply at all.
``with Responder(url, queue, answer) as r: ... r.requests ... r.answered ...``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pika

Answer = tuple[float, dict[str, Any], bytes, str | None]


class Responder:
    def __init__(self, url: str, queue: str,
                 answer: Callable[[Any, bytes], Answer | None]) -> None:
        self.url, self.queue, self.answer = url, queue, answer
        #: Every request taken: (properties, body).
        self.requests: list[tuple[Any, bytes]] = []
        #: Every request whose reply has been sent (after its delay), in the order sent.
        self.answered: list[tuple[Any, bytes]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> Responder:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"the responder did not start: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
        except BaseException as exc:
            self._error = exc
            return
        channel = conn.channel()

        def on_request(ch: Any, method: Any, props: Any, body: bytes) -> None:
            self.requests.append((props, body))
            ch.basic_ack(method.delivery_tag)
            answered = self.answer(props, body)
            if answered is None or not props.reply_to:
                return
            delay, headers, reply, content_type = answered
            reply_props = pika.BasicProperties(correlation_id=props.correlation_id,
                                               headers=headers or None,
                                               content_type=content_type)

            def send() -> None:
                ch.basic_publish("", props.reply_to, reply, reply_props)
                self.answered.append((props, body))

            if delay > 0:
                conn.call_later(delay, send)
            else:
                send()

        channel.basic_consume(self.queue, on_request)
        self._ready.set()
        try:
            while not self._stop.is_set():
                conn.process_data_events(time_limit=0.05)
        finally:
            conn.close()
