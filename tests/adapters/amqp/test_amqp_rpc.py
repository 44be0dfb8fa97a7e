"""amqp outbound as a request/reply destination (AMQP RPC with direct reply-to) against a
tiny real responder on the legacy vhost: the reply as a Reply, the request's properties,
error replies translated, a responder that is down, and a late reply dropped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from esbtest.amqp_responder import Answer, Responder
from esbtest.legacy_broker import Legacy, legacy_broker

from esb.adapters.amqp.outbound import AmqpOutbound
from esb.adapters.amqp.rpc import DIRECT_REPLY_TO
from esb.adapters.amqp.settings import AmqpOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError, TransientError

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def legacy() -> Iterator[Legacy]:
    with legacy_broker() as scope:
        yield scope


def customer_service(props: Any, body: bytes) -> Answer | None:
    """``{"id": N}`` → the customer; some ids answer like a failing legacy system does."""
    cid = orjson.loads(body)["id"]
    if cid == 404:
        return 0, {"status": 404}, b"no customer 404", "text/plain"
    if cid == 503:
        return 0, {"status": "503"}, b"database offline", "text/plain"
    if cid == 13:
        return 0, {"error": "CUST-13 locked"}, b"", None
    if cid == 7:
        return 0, {"status": "ok"}, b'{"id": 7}', "application/json"  # a bad answer
    if cid == 0:
        return None  # never answers
    delay = 2.0 if cid == 999 else 0
    return delay, {"x-erp-site": "north"}, orjson.dumps(
        {"id": cid, "name": f"Customer {cid}"}), "application/json"


@contextlib.asynccontextmanager
async def rpc(legacy: Legacy, tmp_path: Path, *, responder: bool = True
              ) -> AsyncIterator[tuple[AmqpOutbound, Responder | None]]:
    queue = await asyncio.to_thread(legacy.queue, "rpc")
    model = AmqpOutboundSettings.model_validate(
        {"url": legacy.url, "exchange": "", "routing_key": queue})
    side = AmqpOutbound(model, OutboundContext(name="erp-rpc", config_dir=tmp_path,
                                               http=lambda: None))  # type: ignore[arg-type,return-value]
    with contextlib.ExitStack() as stack:
        r = stack.enter_context(Responder(legacy.url, queue, customer_service)) \
            if responder else None
        await side.start()
        try:
            yield side, r
        finally:
            await side.stop()


def ask(cid: int, **changes: Any) -> Envelope:
    return Envelope(source="api", type="customer.get", data={"id": cid},
                    datacontenttype="application/json", **changes)


async def test_request_returns_the_reply_and_carries_what_a_legacy_server_needs(
        legacy: Legacy, tmp_path: Path) -> None:
    async with rpc(legacy, tmp_path) as (side, responder):
        assert responder is not None
        deadline = int(time.time() * 1000) + 5000
        env = ask(42, correlationid="conv-1", idempotencykey="k-42", esbdeadline=deadline)
        reply = await asyncio.wait_for(side.request(env), 10)
        assert reply.status == 200
        assert orjson.loads(reply.body) == {"id": 42, "name": "Customer 42"}
        assert reply.content_type == "application/json"
        assert reply.headers == {"x-erp-site": "north"}
        (props, body), = responder.requests
        assert orjson.loads(body) == {"id": 42}
        assert props.reply_to.startswith(DIRECT_REPLY_TO + ".")  # the broker names the channel
        assert props.correlation_id and props.correlation_id != "conv-1"  # this call's own
        assert props.headers["correlation-id"] == "conv-1"
        assert props.headers["idempotency-key"] == "k-42"
        assert props.delivery_mode == 1 and 0 < int(props.expiration) <= 5000
        # many calls at once, each gets its own answer
        replies = await asyncio.wait_for(
            asyncio.gather(*(side.request(ask(i)) for i in range(100, 150))), 20)
        assert [orjson.loads(r.body)["id"] for r in replies] == list(range(100, 150))
        assert len(side._replies) == 0


@pytest.mark.parametrize(("cid", "error", "status", "text"), [
    (404, PermanentError, 404, "answered 404: no customer 404"),
    (503, TransientError, 503, "answered 503: database offline"),
    (13, PermanentError, None, "answered an error: CUST-13 locked"),
    (7, PermanentError, None, "bad reply from the legacy system: header status='ok'"),
])
async def test_error_replies_are_translated(legacy: Legacy, tmp_path: Path, cid: int,
                                            error: type[Exception], status: int | None,
                                            text: str) -> None:
    async with rpc(legacy, tmp_path) as (side, _):
        with pytest.raises(error) as raised:
            await asyncio.wait_for(side.request(ask(cid)), 10)
        assert type(raised.value) is error
        assert raised.value.status == status  # type: ignore[attr-defined]
        assert text in str(raised.value)


async def test_a_responder_that_is_down_leaves_the_call_waiting_until_its_limit(
        legacy: Legacy, tmp_path: Path) -> None:
    async with rpc(legacy, tmp_path, responder=False) as (side, _):
        deadline = int(time.time() * 1000) + 300
        with pytest.raises(TimeoutError):  # the runtime's limit: 504 to the caller
            await asyncio.wait_for(side.request(ask(1, esbdeadline=deadline)), 0.5)
        assert len(side._replies) == 0  # the call forgot its correlation id
        queue = side.settings.routing_key
        # the request expires on the legacy queue: nobody waits for it any more
        for _ in range(100):
            if await asyncio.to_thread(legacy.count, queue) == 0:
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(legacy.count, queue) == 0


async def test_a_reply_after_the_call_gave_up_reaches_nobody(legacy: Legacy,
                                                            tmp_path: Path) -> None:
    async with rpc(legacy, tmp_path) as (side, responder):
        assert responder is not None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(side.request(ask(999)), 0.3)  # answers after 2 s
        # calls go on while the late reply arrives: each gets its own answer only
        asked, replies = [], []
        until = time.monotonic() + 2.5
        cid = 100
        while time.monotonic() < until:
            asked.append(cid)
            replies.append(await asyncio.wait_for(side.request(ask(cid)), 10))
            cid += 1
            await asyncio.sleep(0.1)
        assert [orjson.loads(r.body)["id"] for r in replies] == asked
        assert len(responder.requests) == len(asked) + 1  # 999 answered, dropped here
        assert len(side._replies) == 0
