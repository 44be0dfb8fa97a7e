"""Which way should replies travel on RabbitMQ? Direct reply-to vs a reply queue per instance.

    python bench/reply_transport.py [--url AMQP_URL] [--n 4000] [--window 200]

Two processes: a *server* consumes requests from a queue (prefetch 200) and publishes each
reply (confirmed, ``mandatory``) then acks the request, as esb's delivery worker does; a
*caller* keeps ``--window`` requests in flight (confirmed, persistent publishes) and waits for
each reply. Reported per mode: round trips per second and the p50/p99 round trip.

* ``direct``: ``reply_to = amq.rabbitmq.reply-to``, consumed (no-ack) on the caller's
  publishing channel; the server publishes to the default exchange.
* ``queue``: an exclusive, auto-delete classic queue per caller, bound to a direct exchange;
  the server publishes to the exchange with the queue's routing key (what esb does).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid
from typing import Any

import pika

from esb.bus.broker.connection import AmqpLink
from esb.bus.broker.publisher import ConfirmedPublisher

EXCHANGE = "esb-bench-reply"


async def _server(url: str, queue: str, ready: Any, stop: Any) -> None:
    publisher = ConfirmedPublisher(1000)

    async def connected(link: AmqpLink) -> None:
        await publisher.open(link)
        ch = await link.channel()
        await link.call(ch.queue_declare, queue=queue, auto_delete=False)
        await link.call(ch.basic_qos, prefetch_count=200)
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
            async def answer() -> None:
                reply = pika.BasicProperties(correlation_id=props.correlation_id,
                                             delivery_mode=1)
                if props.reply_to.startswith("amq.rabbitmq.reply-to"):
                    await publisher.publish("", props.reply_to, body, reply)
                else:
                    await publisher.publish(EXCHANGE, props.reply_to, body, reply)
                channel.basic_ack(method.delivery_tag)

            task = loop.create_task(answer())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        ch.basic_consume(queue, on_message)

    link = AmqpLink(url, name="bench-reply-server", on_connected=connected)
    await link.start()
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    await link.close()


def server(url: str, queue: str, ready: Any, stop: Any) -> None:
    asyncio.run(_server(url, queue, ready, stop))


async def caller(url: str, queue: str, mode: str, n: int, window: int) -> dict[str, float]:
    publisher = ConfirmedPublisher(1000)
    waiting: dict[str, tuple[float, asyncio.Future[float]]] = {}
    reply_key = f"reply.{uuid.uuid4().hex}"

    def on_reply(channel: Any, method: Any, props: Any, body: bytes) -> None:
        entry = waiting.pop(props.correlation_id, None)
        if entry is not None:
            entry[1].set_result(time.perf_counter() - entry[0])

    async def connected(link: AmqpLink) -> None:
        await publisher.open(link)
        if mode == "direct":
            ch = publisher._channel  # the consume must be on the publishing channel
            assert ch is not None
            ch.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
        else:
            ch = await link.channel()
            await link.call(ch.exchange_declare, exchange=EXCHANGE, exchange_type="direct")
            await link.call(ch.queue_declare, queue=reply_key, exclusive=True,
                            auto_delete=True)
            await link.call(ch.queue_bind, queue=reply_key, exchange=EXCHANGE,
                            routing_key=reply_key)
            ch.basic_consume(reply_key, on_reply, auto_ack=True)

    link = AmqpLink(url, name=f"bench-reply-{mode}", on_connected=connected)
    await link.start()
    reply_to = "amq.rabbitmq.reply-to" if mode == "direct" else reply_key
    body = b"x" * 1024
    slots = asyncio.Semaphore(window)
    latencies: list[float] = []

    async def one() -> None:
        async with slots:
            cid = uuid.uuid4().hex
            fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            waiting[cid] = (time.perf_counter(), fut)
            props = pika.BasicProperties(correlation_id=cid, reply_to=reply_to,
                                         delivery_mode=2, message_id=cid)
            await publisher.publish("", queue, body, props)
            latencies.append(await asyncio.wait_for(fut, 30))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    took = time.perf_counter() - started
    await link.close()
    latencies.sort()
    return {"rate": n / took, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    queue = f"esb-bench-requests-{uuid.uuid4().hex[:8]}"
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    proc = multiprocessing.Process(target=server, args=(args.url, queue, ready, stop))
    proc.start()
    ready.wait(30)
    try:
        for r in range(args.rounds):
            for mode in ("direct", "queue"):
                res = asyncio.run(caller(args.url, queue, mode, args.n, args.window))
                print(f"round {r + 1} {mode:6} {res['rate']:8.0f} round trips/s  "
                      f"p50 {res['p50_ms']:6.1f} ms  p99 {res['p99_ms']:6.1f} ms", flush=True)
    finally:
        stop.set()
        proc.join(10)
        conn = pika.BlockingConnection(pika.URLParameters(args.url))
        ch = conn.channel()
        ch.queue_delete(queue)
        ch.exchange_delete(EXCHANGE)
        conn.close()


if __name__ == "__main__":
    main()
