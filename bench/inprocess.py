"""esb's own work per message, timed in process, without sockets.

    python bench/inprocess.py [--count 20000]

Drives the daemon's real pieces for a 1 KiB JSON pass-through: the inbound dispatcher and rest
inbound handler (an ASGI request in memory) → ingress (routing, stamping, trace, metrics) → a
publish call that builds the AMQP properties and the CloudEvent JSON as the RabbitMQ bus does;
then the consume side: ``Envelope.from_json`` → delivery worker (time limit, trace, metrics,
ack) → an outbound call that serializes the payload. What the broker, uvicorn and the HTTP
client cost is left out: this is the part that is esb's alone, the part the ceiling has no
counterpart for. Prints µs per message for each side.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pika
from harness.payloads import json_order
from harness.util import new_loop

from esb.adapters.rest.inbound import RestInbound
from esb.adapters.rest.settings import RestInboundSettings
from esb.bus.config.model import DeliveryConfig
from esb.bus.envelope import Envelope
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.runtime.delivery import DeliveryWorker
from esb.bus.runtime.http import InboundDispatcher
from esb.bus.runtime.ingress import Ingress, RouterHolder, SourceContext
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.trace import MemoryTrace

SIZE = 1024
ROUTES = "routes:\n  - name: all\n    from: [in]\n    to: [{destination: sink}]\n"


class Wire:
    """Stands in for the RabbitMQ bus: does what it does to an envelope, keeps the bytes."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []

    async def publish(self, address: str, envelope: Envelope) -> None:
        pika.BasicProperties(**envelope.amqp_properties())
        self.queue.append(envelope.to_json())

    async def publish_delayed(self, address: str, envelope: Envelope, delay: float) -> float:
        return delay


class Delivered:
    redelivered = False
    alive = True

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    def ack(self) -> None:
        return None

    def requeue(self) -> None:
        return None


class Destination:
    async def send(self, envelope: Envelope) -> None:
        envelope.data_bytes()


async def measure(count: int) -> tuple[float, float]:
    base = Path(tempfile.gettempdir())
    router = compile_routes(parse_route_files({"r.yaml": ROUTES}, base=base), sources={"in"},
                            destinations={"sink"}, base_dir=base)
    metrics, trace, wire = Metrics(), MemoryTrace("bench", max_ids=1000), Wire()
    ingress = Ingress(wire, RouterHolder(router), metrics, "bench", trace=trace)  # type: ignore[arg-type]
    ctx = SourceContext("in", base, "bench", 1 << 20, ingress)
    inbound = RestInbound(RestInboundSettings.model_validate({"path": "/in"}), ctx, 1 << 20)
    app = InboundDispatcher(inbound.routes, None)
    worker = DeliveryWorker("sink", Destination(), wire, DeliveryConfig(concurrency=64),  # type: ignore[arg-type]
                            metrics, "bench", 200, trace=trace)
    body = json_order(SIZE)
    scope: dict[str, Any] = {
        "type": "http", "method": "POST", "path": "/in", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "scheme": "http", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
        "http_version": "1.1", "asgi": {"version": "3.0"}}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    inbound_s = outbound_s = 0.0
    for i in range(count + 2000):  # the first 2,000 warm up
        t0 = time.perf_counter()
        await app(dict(scope), receive, send)
        t1 = time.perf_counter()
        await worker.handle(Delivered(Envelope.from_json(wire.queue.pop())))  # type: ignore[arg-type]
        t2 = time.perf_counter()
        if i >= 2000:
            inbound_s += t1 - t0
            outbound_s += t2 - t1
    return inbound_s / count * 1e6, outbound_s / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    loop = new_loop()
    try:
        inbound, outbound = loop.run_until_complete(measure(args.count))
    finally:
        loop.close()
    print(f"esb's own work per message (1 KiB JSON pass-through, {args.count} messages): "
          f"inbound {inbound:.1f} µs, delivery {outbound:.1f} µs, "
          f"total {inbound + outbound:.1f} µs")


if __name__ == "__main__":
    main()
