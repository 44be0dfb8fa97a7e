"""The legacy system's RabbitMQ broker for tests of the amqp adapter: a vhost of its own on
the shared broker (``esb-legacy-<random>``, made with ``rabbitmqctl`` and deleted afterwards),
or name prefixes in the bus URL's own vhost where ``rabbitmqctl`` cannot reach the broker."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pytest

from esbtest.broker import broker_problem, bus_url

#: The ``xdist_group`` of the modules sharing one legacy vhost (the session fixture ``legacy``
#: of tests/adapters/amqp/conftest.py): they run on one worker, which makes it once.
LEGACY_GROUP = "amqp-legacy-vhost"


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)


class Legacy:
    """The legacy system's broker: blocking pika for set-up and inspection."""

    def __init__(self, url: str, mode: str, prefix: str) -> None:
        self.url = url
        self.mode = mode  # "vhost" or "prefix"
        self.prefix = prefix
        self.queues: set[str] = set()
        self.exchanges: set[str] = set()

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}-{uuid.uuid4().hex[:6]}"

    @contextlib.contextmanager
    def channel(self) -> Iterator[Any]:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            yield conn.channel()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def queue(self, base: str, *, exact: bool = False, **arguments: Any) -> str:
        name = base if exact else self.name(base)
        with self.channel() as ch:
            ch.queue_declare(name, durable=True, arguments=arguments or None)
        self.queues.add(name)
        return name

    def exchange(self, base: str, kind: str = "topic") -> str:
        name = self.name(base)
        with self.channel() as ch:
            ch.exchange_declare(name, kind, durable=True)
        self.exchanges.add(name)
        return name

    def bind(self, queue: str, exchange: str, key: str) -> None:
        with self.channel() as ch:
            ch.queue_bind(queue, exchange, key)

    def publish(self, queue: str, body: bytes, **props: Any) -> None:
        with self.channel() as ch:
            ch.confirm_delivery()
            ch.basic_publish("", queue, body, pika.BasicProperties(**props), mandatory=True)

    def count(self, queue: str) -> int | None:
        """Ready messages, or ``None`` when the queue does not exist."""
        try:
            with self.channel() as ch:
                return ch.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return None

    def get_all(self, queue: str) -> list[tuple[Any, Any, bytes]]:
        out = []
        with self.channel() as ch:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return out
                out.append((method, props, body))

    def drop_connections(self) -> None:
        """Every client connection to the legacy vhost is closed by the broker."""
        vhost = urlsplit(self.url).path.lstrip("/")
        _rabbitmqctl("close_all_connections", "--vhost", vhost, "legacy broker restarted")

    def cleanup(self) -> None:
        with self.channel() as ch:
            for q in self.queues:
                with contextlib.suppress(Exception):
                    ch.queue_delete(q)
            for x in self.exchanges:
                with contextlib.suppress(Exception):
                    ch.exchange_delete(x)


@contextlib.contextmanager
def legacy_broker() -> Iterator[Legacy]:
    """A vhost of its own (made with ``rabbitmqctl``, deleted afterwards) playing a legacy
    system's broker; on a broker ``rabbitmqctl`` cannot reach, name prefixes in the bus
    URL's vhost (``mode == "prefix"``)."""
    base = bus_url()
    problem = broker_problem(base)
    if problem:
        pytest.fail(problem, pytrace=False)
    parts = urlsplit(base)
    vhost = f"esb-legacy-{uuid.uuid4().hex[:8]}"
    local = parts.hostname in ("127.0.0.1", "localhost")
    made = False
    if local and shutil.which("rabbitmqctl"):
        made = _rabbitmqctl("add_vhost", vhost).returncode == 0 and _rabbitmqctl(
            "set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*"
        ).returncode == 0
    if local and not made:
        pytest.fail("could not make the legacy vhost with rabbitmqctl on this host",
                    pytrace=False)
    if made:
        url = urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))
        scope = Legacy(url, "vhost", "legacy-")
    else:  # fallback: same vhost as the bus, names prefixed
        scope = Legacy(base, "prefix", f"esbtest-legacy-{uuid.uuid4().hex[:8]}-")
    try:
        yield scope
    finally:
        if made:
            _rabbitmqctl("delete_vhost", vhost)
        else:
            scope.cleanup()
