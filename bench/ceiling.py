"""The raw ceiling: the same relay esb does, with the same libraries and guarantees, and no
ESB logic at all.

    python bench/ceiling.py --port PORT --sink URL --queue NAME [--url AMQP_URL]
                            [--prefetch 200] [--concurrency 64] [--workers 1]

* HTTP in: uvicorn with httptools on uvloop and a bare ASGI app (esb's server stack, minus
  Starlette); ``POST /in`` reads the body and publishes it, persistent and ``mandatory``, on a
  pika asyncio channel in confirm mode with up to 1,000 confirms in flight; it answers ``202``
  only after the broker confirmed (and did not return) the message.
* Out: one consumer with ``basic.qos`` prefetch, at most ``--concurrency`` POSTs in flight to
  the sink, ack after a 2xx: through esb's own outbound client (httpx over its lean
  transport, as ``esb.bus.runtime.http.make_http_client`` builds it) by default, or with
  ``--client raw``
  through a bare HTTP/1.1 keep-alive client (``harness/rawhttp.py``): the *lean relay*, whose
  CPU per message is the floor a Python relay reaches.

``GET /readyz`` answers 200 once the consumer runs. On SIGTERM it stops serving, waits for the
deliveries in flight, deletes its queue and exits.

``--workers N`` runs N such relays in forked processes on one port, listening as esb's workers
do, each with its own connection consuming the same queue — what ``esb run --workers N`` does,
so the two are compared at the same parallelism.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
from typing import Any

import httpx
import pika
import uvicorn
from harness import amqp
from harness.rawhttp import RawHttpClient
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from esb.bus.runtime.http import bind_listener, make_http_client, worker_listener

URL = os.environ.get("ESB_TEST_BUS_URL", "amqp://guest:guest@127.0.0.1:5672/")


class Relay:
    def __init__(self, url: str, queue: str, sink: str, prefetch: int, concurrency: int,
                 window: int = 1000, delete_queue: bool = True, client: str = "httpx") -> None:
        self.delete_queue = delete_queue
        self.params = pika.URLParameters(url)
        self.queue = queue
        self.sink = httpx.URL(sink)  # parsed once, as esb's rest outbound does
        self.prefetch = prefetch
        self.slots = asyncio.Semaphore(concurrency)
        self.window = asyncio.Semaphore(window)
        self.conn: AsyncioConnection | None = None
        self.pub: Channel | None = None
        self.sub: Channel | None = None
        self.confirms = amqp.Confirms()
        self.tasks: set[asyncio.Task[None]] = set()
        self.ready = False
        self.http = make_http_client(30)
        self.raw = RawHttpClient(sink, max_connections=concurrency) if client == "raw" else None

    # -- AMQP plumbing --------------------------------------------------------------------------

    async def start(self) -> None:
        self.conn = await amqp.connect(self.params)
        self.pub = await amqp.channel(self.conn)
        await amqp.call(self.pub.queue_declare, self.queue, durable=True)
        await self.confirms.attach(self.pub)
        self.sub = await amqp.channel(self.conn)
        await amqp.call(self.sub.basic_qos, prefetch_count=self.prefetch)
        self.sub.basic_consume(self.queue, self._on_message, auto_ack=False)
        self.ready = True

    async def publish(self, body: bytes) -> None:
        async with self.window:
            assert self.pub is not None
            tag, confirmed = self.confirms.expect()
            props = pika.BasicProperties(delivery_mode=2, message_id=str(tag),
                                         content_type="application/json")
            self.pub.basic_publish("", self.queue, body, props, mandatory=True)
            await confirmed

    def _on_message(self, ch: Channel, method: Any, props: Any, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(ch, method.delivery_tag,
                                                                    body, props.content_type))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, ch: Channel, tag: int, body: bytes, ctype: str | None) -> None:
        async with self.slots:
            try:
                if self.raw is not None:
                    status = await self.raw.post(body, ctype or "text/plain")
                else:
                    status = (await self.http.post(
                        self.sink, content=body,
                        headers={"Content-Type": ctype or "text/plain"})).status_code
                ok = 200 <= status < 300
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
        if ch.is_open:
            if ok:
                ch.basic_ack(tag)
            else:
                ch.basic_nack(tag, requeue=True)

    async def close(self) -> None:
        for _ in range(200):
            if not self.tasks:
                break
            await asyncio.sleep(0.05)
        if self.delete_queue and self.pub is not None and self.pub.is_open:
            with contextlib.suppress(Exception):
                await amqp.call(self.pub.queue_delete, self.queue)
        if self.conn is not None and self.conn.is_open:
            self.conn.close()
        await self.http.aclose()
        if self.raw is not None:
            await self.raw.close()

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            status = 200 if self.ready else 503
            await _respond(send, status, b'{"status": "ready"}' if self.ready else b"{}")
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            await self.publish(b"".join(chunks))
        except Exception:
            await _respond(send, 503, b'{"status": "bus unavailable"}')
            return
        await _respond(send, 202, b'{"status": "accepted"}')


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def main_async(args: argparse.Namespace, sock: socket.socket | None = None) -> None:
    # With a shared socket (a worker) the harness deletes the queue once all have stopped.
    relay = Relay(args.url, args.queue, args.sink, args.prefetch, args.concurrency,
                  delete_queue=sock is None, client=args.client)
    await relay.start()
    config = uvicorn.Config(relay, host="127.0.0.1", port=args.port, lifespan="off",
                            access_log=False, log_level="warning", loop="none",
                            http="httptools", server_header=False)
    server = uvicorn.Server(config)
    try:
        # returns on SIGTERM / SIGINT
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        await relay.close()


def _worker(args: argparse.Namespace, sock: socket.socket) -> None:
    import uvloop

    uvloop.run(main_async(args, worker_listener(sock)))


def run_workers(args: argparse.Namespace) -> None:
    """N relays in forked processes on one port, each listening as an esb worker does
    (``worker_listener``: a socket of its own where the kernel balances ports); SIGTERM stops
    them all."""
    sock = bind_listener("127.0.0.1", args.port, for_workers=True)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(args, sock), daemon=False)
             for _ in range(args.workers)]
    for p in procs:
        p.start()

    def stop(signum: int, frame: object) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--url", default=URL)
    parser.add_argument("--prefetch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx",
                        help="how the relay POSTs to the sink (raw: the lean relay)")
    args = parser.parse_args()
    if args.workers > 1:
        run_workers(args)
        return
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
