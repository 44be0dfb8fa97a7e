"""Raw publish + consume throughput of the AMQP clients in the design card, on this machine's
RabbitMQ: the figures behind which client does which job (docs/architecture.md).

    python bench/raw_clients.py [--n 5000] [--size 1024] [--url amqp://...]

Every mode publishes N persistent messages of SIZE bytes to a fresh queue, then consumes them
all with manual acks (prefetch 200). Prints msg/s per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable

import kombu
import pika
from pika.adapters.asyncio_connection import AsyncioConnection

URL = os.environ.get("ESB_TEST_BUS_URL", "amqp://guest:guest@127.0.0.1:5672/")


def pika_blocking(n: int, body: bytes, confirms: bool) -> tuple[float, float]:
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    q = f"bench-{uuid.uuid4().hex[:8]}"
    ch.queue_declare(q, durable=True)
    if confirms:
        ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    t0 = time.perf_counter()
    for _ in range(n):
        ch.basic_publish("", q, body, props, mandatory=confirms)
    t1 = time.perf_counter()
    ch.basic_qos(prefetch_count=200)
    got = 0
    for method, _props, _body in ch.consume(q, inactivity_timeout=5):
        if method is None:
            break
        ch.basic_ack(method.delivery_tag)
        got += 1
        if got == n:
            break
    t2 = time.perf_counter()
    ch.cancel()
    ch.queue_delete(q)
    conn.close()
    return n / (t1 - t0), got / (t2 - t1)


def kombu_mode(n: int, body: bytes, confirms: bool) -> tuple[float, float]:
    q = kombu.Queue(f"bench-{uuid.uuid4().hex[:8]}", durable=True)
    transport_options = {"confirm_publish": True} if confirms else {}
    with kombu.Connection(URL, transport_options=transport_options) as conn:
        producer = conn.Producer(serializer="raw")
        q(conn.default_channel).declare()
        t0 = time.perf_counter()
        for _ in range(n):
            producer.publish(body, routing_key=q.name, delivery_mode=2)
        t1 = time.perf_counter()
        got = 0

        def on_message(b: object, message: kombu.Message) -> None:
            nonlocal got
            message.ack()
            got += 1

        with conn.Consumer(q, callbacks=[on_message], prefetch_count=200, accept=None):
            while got < n:
                conn.drain_events(timeout=5)
        t2 = time.perf_counter()
        q(conn.default_channel).delete()
    return n / (t1 - t0), got / (t2 - t1)


async def _pika_asyncio(n: int, body: bytes, window: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[AsyncioConnection] = loop.create_future()
    AsyncioConnection(pika.URLParameters(URL), on_open_callback=opened.set_result,
                      custom_ioloop=loop)
    conn = await opened
    chf: asyncio.Future[pika.channel.Channel] = loop.create_future()
    conn.channel(on_open_callback=chf.set_result)
    ch = await chf
    q = f"bench-{uuid.uuid4().hex[:8]}"
    done: asyncio.Future[None] = loop.create_future()
    ch.queue_declare(q, durable=True, callback=lambda _f: done.set_result(None))
    await done
    acked = 0
    all_acked = asyncio.Event()
    slots = asyncio.Semaphore(window)

    def on_confirm(frame: object) -> None:
        nonlocal acked
        m = frame.method  # type: ignore[attr-defined]
        count = (m.delivery_tag - acked) if m.multiple else 1
        acked += count
        for _ in range(count):
            slots.release()
        if acked >= n:
            all_acked.set()

    cdone: asyncio.Future[None] = loop.create_future()
    ch.confirm_delivery(ack_nack_callback=on_confirm,
                        callback=lambda _f: cdone.set_result(None))
    await cdone
    props = pika.BasicProperties(delivery_mode=2)
    t0 = time.perf_counter()
    for _ in range(n):
        await slots.acquire()
        ch.basic_publish("", q, body, props, mandatory=True)
    await all_acked.wait()
    t1 = time.perf_counter()
    got = 0
    consumed = asyncio.Event()

    def on_message(c: object, method: object, _p: object, _b: bytes) -> None:
        nonlocal got
        ch.basic_ack(method.delivery_tag)  # type: ignore[attr-defined]
        got += 1
        if got == n:
            consumed.set()

    ch.basic_qos(prefetch_count=200)
    ch.basic_consume(q, on_message)
    await consumed.wait()
    t2 = time.perf_counter()
    ch.queue_delete(q)
    conn.close()
    return n / (t1 - t0), n / (t2 - t1)


def pika_asyncio(n: int, body: bytes, window: int) -> tuple[float, float]:
    return asyncio.run(_pika_asyncio(n, body, window))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="n=500, for a smoke run")
    args = ap.parse_args(argv)
    n = 500 if args.quick else args.n
    body = b"x" * args.size
    modes: list[tuple[str, Callable[[], tuple[float, float]]]] = [
        ("pika blocking, no confirms", lambda: pika_blocking(n, body, False)),
        ("pika blocking, confirm each", lambda: pika_blocking(n, body, True)),
        ("kombu/py-amqp, no confirms", lambda: kombu_mode(n, body, False)),
        ("kombu/py-amqp, confirm_publish", lambda: kombu_mode(n, body, True)),
        ("pika asyncio, 1000 confirms in flight", lambda: pika_asyncio(n, body, 1000)),
    ]
    print(f"{n} persistent messages of {args.size} B; publish and consume msg/s")
    print(f"{'mode':40} {'publish':>10} {'consume':>10}")
    for name, fn in modes:
        pub, con = fn()
        print(f"{name:40} {pub:10.0f} {con:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
