"""Bodies are capped on every way in: a legacy AMQP message and a polled API answer past their
``max_body`` never reach the bus (HTTP bodies: see test_header_limits and test_content_encoding),
and a polled answer is read only up to the cap, not buffered whole."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from esbtest.asgi import serve_in_thread
from pika.spec import Basic, BasicProperties
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from esb.adapters.amqp.inbound import AmqpInbound, NotAnEnvelope
from esb.adapters.amqp.settings import AmqpInboundSettings
from esb.adapters.rest.polling import Poller, PollFailed
from esb.adapters.rest.settings import PollSettings
from esb.adapters.testing.context import RecordingInboundContext


def amqp_side(tmp_path: Path, **extra: object) -> AmqpInbound:
    settings = AmqpInboundSettings.model_validate(
        {"url": "amqp://guest:guest@127.0.0.1:5672/", "queue": "legacy", **extra})
    return AmqpInbound(settings, RecordingInboundContext(name="erp", config_dir=tmp_path))


def test_an_amqp_message_past_max_body_is_rejected(tmp_path: Path) -> None:
    side = amqp_side(tmp_path, max_body=1024)
    props = BasicProperties(content_type="application/json")
    deliver = Basic.Deliver(routing_key="orders")
    assert side.envelope(deliver, props, b'{"a": 1}').data == {"a": 1}
    with pytest.raises(NotAnEnvelope, match="max_body"):
        side.envelope(deliver, props, b'{"a": "' + b"x" * 2000 + b'"}')


def test_an_amqp_message_too_deep_is_rejected(tmp_path: Path) -> None:
    side = amqp_side(tmp_path)
    props = BasicProperties(content_type="application/json")
    with pytest.raises(NotAnEnvelope, match="64 levels"):
        side.envelope(Basic.Deliver(routing_key="x"), props, b"[" * 100 + b"]" * 100)


def endless_api() -> Starlette:
    sent = {"bytes": 0}

    async def items(request: Request) -> Response:
        async def body():  # an answer that never ends (until the client goes away)
            yield b'{"items": ["'
            while not await request.is_disconnected():
                sent["bytes"] += 65536
                yield b"x" * 65536

        return StreamingResponse(body(), media_type="application/json")

    async def small(request: Request) -> Response:
        return Response(orjson.dumps({"items": [{"id": "1"}]}), media_type="application/json")

    app = Starlette(routes=[Route("/endless", items), Route("/small", small)])
    app.state.sent = sent
    return app


async def test_a_polled_answer_past_max_body_fails_the_poll_unread(tmp_path: Path) -> None:
    app = endless_api()
    with serve_in_thread(app) as base:
        ctx = RecordingInboundContext(name="crm", config_dir=tmp_path)
        endless = Poller(PollSettings.model_validate(
            {"url": base + "/endless", "items": "items", "max_body": "256KiB"}), ctx, "t")
        with pytest.raises(PollFailed, match="larger than max_body"):
            await endless._fetch()  # returns at all: the endless answer was not read whole
        small = Poller(PollSettings.model_validate(
            {"url": base + "/small", "items": "items", "max_body": "256KiB"}), ctx, "t")
        assert await small._fetch() == [{"id": "1"}]
