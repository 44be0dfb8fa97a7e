"""The amqp adapter against a real RabbitMQ: a second vhost plays the legacy system's broker.

The vhost (``esb-legacy-<random>``) is made with ``rabbitmqctl`` for this module and the
contract module (conftest.py), and deleted afterwards. Where ``rabbitmqctl`` cannot reach the
broker (a remote ``ESB_TEST_BUS_URL``), the tests fall back to name prefixes in the bus URL's
own vhost (``legacy.mode``), and the two tests that must drop the legacy broker's connections
fail, saying so: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from esbtest.legacy_broker import LEGACY_GROUP, Legacy

from esb.adapters.amqp.inbound import AmqpInbound
from esb.adapters.amqp.outbound import AmqpOutbound
from esb.adapters.amqp.settings import AmqpInboundSettings, AmqpOutboundSettings
from esb.adapters.amqp.spec import SPEC
from esb.adapters.spec import OutboundContext
from esb.adapters.testing import OutboundContract, OutboundPeer
from esb.adapters.testing.context import RecordingInboundContext
from esb.adapters.testing.outbound_contract import Delivered
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError, TransientError

# ``legacy``, the legacy vhost, is conftest.py's: shared with the contract module.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.xdist_group(LEGACY_GROUP)]


async def eventually(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def inbound_settings(legacy: Legacy, queue: str, **extra: Any) -> AmqpInboundSettings:
    return AmqpInboundSettings.model_validate(
        {"url": legacy.url, "queue": queue, "retry_delay": "200ms", "reconnect_max": "500ms",
         **extra})


@contextlib.asynccontextmanager
async def running(legacy: Legacy, queue: str, tmp_path: Path, ctx: Any = None,
                  **extra: Any) -> AsyncIterator[tuple[AmqpInbound, RecordingInboundContext]]:
    ctx = ctx or RecordingInboundContext(name="erp", config_dir=tmp_path)
    side = AmqpInbound(inbound_settings(legacy, queue, **extra), ctx)
    await side.start()
    try:
        yield side, ctx
    finally:
        ctx.release()
        await asyncio.wait_for(side.stop(), 10)


# -- inbound ----------------------------------------------------------------------------------


async def test_legacy_message_becomes_an_envelope_and_is_acked(legacy: Legacy,
                                                               tmp_path: Path) -> None:
    queue = await asyncio.to_thread(legacy.queue, "orders")
    await asyncio.to_thread(
        legacy.publish, queue, b'{"order": 7, "total": 9.5}', message_id="erp-7",
        type="order.created", correlation_id="corr-7", content_type="application/json",
        app_id="erp-system", timestamp=1_700_000_000,
        headers={"x-site": "berlin", "x-secret-internal": "no", "traceparent":
                 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    async with running(legacy, queue, tmp_path, headers=["X-Site"]) as (_, ctx):
        await eventually(lambda: ctx.accepted)
    env = ctx.accepted[0]
    assert env.id == "erp-7" and env.idempotencykey == "erp-7"
    assert env.type == "order.created"
    assert env.correlationid == "corr-7"
    assert env.source == "erp-system"
    assert env.datacontenttype == "application/json"
    assert env.data == {"order": 7, "total": 9.5}
    assert env.esbheaders == {"x-site": "berlin"}
    assert env.traceparent.startswith("00-0af7651916cd43dd")
    assert int(env.time.timestamp()) == 1_700_000_000
    # Stopped (connection closed): an unacked message would be back on the queue.
    assert await asyncio.to_thread(legacy.count, queue) == 0
    assert len(ctx.accepted) == 1


async def test_defaults_when_the_legacy_message_says_little(legacy: Legacy,
                                                            tmp_path: Path) -> None:
    queue = await asyncio.to_thread(legacy.queue, "bare")
    await asyncio.to_thread(legacy.publish, queue, b"\x00\x01raw")
    await asyncio.to_thread(legacy.publish, queue, "Grüße".encode(),
                            content_type="text/plain; charset=utf-8")
    async with running(legacy, queue, tmp_path, type="erp.record") as (_, ctx):
        await eventually(lambda: len(ctx.accepted) == 2)
    raw, text = ctx.accepted
    assert raw.type == "erp.record" and raw.source == "erp"
    assert raw.data == b"\x00\x01raw" and raw.datacontenttype is None
    assert raw.id and raw.idempotencykey is None  # generated id
    assert text.data == "Grüße"
    # Without a type setting the routing key (the queue name here) is the type.
    queue2 = await asyncio.to_thread(legacy.queue, "keyed")
    await asyncio.to_thread(legacy.publish, queue2, b"{}", content_type="application/json")
    async with running(legacy, queue2, tmp_path) as (_, ctx2):
        await eventually(lambda: ctx2.accepted)
    assert ctx2.accepted[0].type == queue2


async def test_bus_unavailable_leaves_the_message_on_the_legacy_queue(legacy: Legacy,
                                                                      tmp_path: Path) -> None:
    queue = await asyncio.to_thread(legacy.queue, "outage")
    await asyncio.to_thread(legacy.publish, queue, b'{"n": 1}', message_id="m-1",
                            content_type="application/json")
    ctx = RecordingInboundContext(name="erp", config_dir=tmp_path, down=True)
    async with running(legacy, queue, tmp_path, ctx):
        await eventually(lambda: ctx.attempts >= 2)  # handed back (requeued) and redelivered
        started, attempts = time.monotonic(), ctx.attempts
        # Half a second holds at most 3 attempts 200 ms apart (6/s); a spinning message
        # makes hundreds.
        await asyncio.sleep(0.5)
        rate = (ctx.attempts - attempts) / (time.monotonic() - started)
        assert rate < 8, f"{rate:.0f} attempts/s: a bus outage must not spin the message"
    assert not ctx.accepted
    assert await asyncio.to_thread(legacy.count, queue) == 1  # still there, not lost
    ctx.down = False
    async with running(legacy, queue, tmp_path, ctx):
        await eventually(lambda: ctx.accepted)
    assert [e.id for e in ctx.accepted] == ["m-1"]
    assert await asyncio.to_thread(legacy.count, queue) == 0


async def test_acked_only_after_accept_returned(legacy: Legacy, tmp_path: Path) -> None:
    queue = await asyncio.to_thread(legacy.queue, "held")
    await asyncio.to_thread(legacy.publish, queue, b"{}", message_id="h-1",
                            content_type="application/json")
    ctx = RecordingInboundContext(name="erp", config_dir=tmp_path)
    ctx.hold()
    side = AmqpInbound(inbound_settings(legacy, queue), ctx)
    await side.start()
    await eventually(lambda: ctx.attempts >= 1)
    # The connection dies while accept() is still open: the legacy message must survive.
    await asyncio.wait_for(side.stop(), 10)
    assert await asyncio.to_thread(legacy.count, queue) == 1
    assert not ctx.accepted


async def test_malformed_message_is_dead_lettered_and_the_rest_flows(legacy: Legacy,
                                                                     tmp_path: Path) -> None:
    dlx = await asyncio.to_thread(legacy.exchange, "dlx", "fanout")
    dead = await asyncio.to_thread(legacy.queue, "dead")
    await asyncio.to_thread(legacy.bind, dead, dlx, "")
    queue = await asyncio.to_thread(legacy.queue, "mixed", **{"x-dead-letter-exchange": dlx})
    await asyncio.to_thread(legacy.publish, queue, b"{not json", message_id="bad-1",
                            content_type="application/json")
    await asyncio.to_thread(legacy.publish, queue, b'{"ok": true}', message_id="good-1",
                            content_type="application/json")
    async with running(legacy, queue, tmp_path) as (_, ctx):
        await eventually(lambda: ctx.accepted)
        await eventually(lambda: legacy.count(dead) == 1)
    assert [e.id for e in ctx.accepted] == ["good-1"]
    assert ctx.refusals == ["not-an-envelope"]  # counted in esb_rejected by the runtime
    assert await asyncio.to_thread(legacy.count, queue) == 0
    [(_, props, body)] = await asyncio.to_thread(legacy.get_all, dead)
    assert body == b"{not json" and props.message_id == "bad-1"


async def test_passive_by_default_and_waits_for_the_queue(legacy: Legacy,
                                                          tmp_path: Path) -> None:
    queue = legacy.name("late")
    async with running(legacy, queue, tmp_path) as (side, ctx):
        await asyncio.sleep(0.8)
        assert side.connects == 0
        assert await asyncio.to_thread(legacy.count, queue) is None  # not created by us
        await asyncio.to_thread(legacy.queue, "unused")  # noise
        await asyncio.to_thread(legacy.queue, queue, exact=True)
        await asyncio.to_thread(legacy.publish, queue, b"{}", content_type="application/json")
        await eventually(lambda: ctx.accepted)


async def test_declare_true_creates_the_queue(legacy: Legacy, tmp_path: Path) -> None:
    queue = legacy.name("declared")
    legacy.queues.add(queue)
    async with running(legacy, queue, tmp_path, declare=True, prefetch=5) as (side, _):
        await eventually(lambda: side.connects == 1)
        assert await asyncio.to_thread(legacy.count, queue) == 0


async def test_reconnects_after_the_connection_is_lost(legacy: Legacy, tmp_path: Path) -> None:
    if legacy.mode != "vhost":
        pytest.fail("needs rabbitmqctl on the broker's host (a legacy vhost whose connections "
                    "it can drop); the suite's broker is remote", pytrace=False)
    queue = await asyncio.to_thread(legacy.queue, "flaky")
    async with running(legacy, queue, tmp_path) as (side, ctx):
        await eventually(lambda: side.connects == 1)
        await asyncio.to_thread(legacy.drop_connections)
        await eventually(lambda: side.connects == 2, timeout=15)
        await asyncio.to_thread(legacy.publish, queue, b"{}", message_id="after",
                                content_type="application/json")
        await eventually(lambda: ctx.accepted)
    assert [e.id for e in ctx.accepted] == ["after"]


# -- outbound ---------------------------------------------------------------------------------


def outbound(legacy: Legacy, tmp_path: Path, **settings: Any) -> AmqpOutbound:
    model = AmqpOutboundSettings.model_validate({"url": legacy.url, **settings})
    ctx = OutboundContext(name="erp-out", config_dir=tmp_path, http=lambda: None)  # type: ignore[arg-type,return-value]
    return AmqpOutbound(model, ctx)


async def test_outbound_publishes_with_properties_and_a_routing_key_template(
        legacy: Legacy, tmp_path: Path) -> None:
    exchange = await asyncio.to_thread(legacy.exchange, "erp")
    queue = await asyncio.to_thread(legacy.queue, "in")
    await asyncio.to_thread(legacy.bind, queue, exchange, "orders.#")
    side = outbound(legacy, tmp_path, exchange=exchange, routing_key="orders.{type}",
                    headers={"x-origin": "esb"}, keep_headers=["x-site"])
    await side.start()
    env = Envelope(id="e-1", source="shop", type="order.created", correlationid="c-1",
                   idempotencykey="k-1", datacontenttype="application/json",
                   data={"n": 1}, esbheaders={"x-site": "berlin"})
    try:
        await side.send(env)
        await side.send(Envelope(source="shop", type="order.xml",
                                 datacontenttype="application/xml", data="<a/>"))
    finally:
        await side.stop()
    got = await asyncio.to_thread(legacy.get_all, queue)
    assert len(got) == 2
    method, props, body = got[0]
    assert method.routing_key == "orders.order.created"
    assert orjson.loads(body) == {"n": 1}
    assert props.message_id == "e-1" and props.correlation_id == "c-1"
    assert props.type == "order.created" and props.app_id == "shop"
    assert props.content_type == "application/json" and props.delivery_mode == 2
    assert props.headers["idempotency-key"] == "k-1"
    assert props.headers["x-origin"] == "esb" and props.headers["x-site"] == "berlin"
    assert got[1][2] == b"<a/>" and got[1][1].content_type == "application/xml"


async def test_outbound_structured_cloudevent(legacy: Legacy, tmp_path: Path) -> None:
    queue = await asyncio.to_thread(legacy.queue, "ce")
    side = outbound(legacy, tmp_path, routing_key=queue, cloudevents="structured")
    await side.start()
    try:
        await side.send(Envelope(id="ce-1", source="shop", type="t", data={"a": 1}))
    finally:
        await side.stop()
    [(_, props, body)] = await asyncio.to_thread(legacy.get_all, queue)
    assert props.content_type == "application/cloudevents+json"
    event = orjson.loads(body)
    assert event["id"] == "ce-1" and event["data"] == {"a": 1}


async def test_unroutable_is_transient_or_permanent_as_configured(legacy: Legacy,
                                                                  tmp_path: Path) -> None:
    exchange = await asyncio.to_thread(legacy.exchange, "nobody")
    env = Envelope(source="shop", type="t", data={})
    side = outbound(legacy, tmp_path, exchange=exchange, routing_key="x")
    await side.start()
    with pytest.raises(TransientError, match="unroutable"):
        await side.send(env)
    await side.stop()
    side = outbound(legacy, tmp_path, exchange=exchange, routing_key="x",
                    unroutable="permanent")
    await side.start()
    with pytest.raises(PermanentError, match="no queue is bound"):
        await side.send(env)
    # A missing template field is permanent too; the channel still works afterwards.
    other = outbound(legacy, tmp_path, exchange=exchange, routing_key="{data.missing}")
    with pytest.raises(PermanentError, match="missing"):
        await other.send(env)
    await side.stop()


async def test_missing_exchange_and_unreachable_broker_are_transient(legacy: Legacy,
                                                                     tmp_path: Path) -> None:
    side = outbound(legacy, tmp_path, exchange="no-such-exchange-" + uuid.uuid4().hex[:6],
                    routing_key="x")
    await side.start()
    with pytest.raises(TransientError):
        await side.send(Envelope(source="s", type="t", data={}))
    # The next send reopens the channel (and fails the same way, cleanly).
    with pytest.raises(TransientError):
        await side.send(Envelope(source="s", type="t", data={}))
    await side.stop()
    down = AmqpOutbound(AmqpOutboundSettings.model_validate(
        {"url": "amqp://guest:s3cret-pw@127.0.0.1:1/", "routing_key": "x"}),
        OutboundContext(name="o", config_dir=tmp_path, http=lambda: None))  # type: ignore[arg-type,return-value]
    await down.start()  # does not raise: the daemon starts, sends retry
    with pytest.raises(TransientError) as info:
        await down.send(Envelope(source="s", type="t", data={}))
    assert "s3cret-pw" not in str(info.value)
    await down.stop()


async def test_outbound_survives_a_lost_connection(legacy: Legacy, tmp_path: Path) -> None:
    if legacy.mode != "vhost":
        pytest.fail("needs rabbitmqctl on the broker's host (a legacy vhost whose connections "
                    "it can drop); the suite's broker is remote", pytrace=False)
    queue = await asyncio.to_thread(legacy.queue, "recon")
    side = outbound(legacy, tmp_path, routing_key=queue)
    await side.start()
    try:
        await side.send(Envelope(source="s", type="t", data={"n": 1}))
        await asyncio.to_thread(legacy.drop_connections)
        await eventually(lambda: not side._link.connected, timeout=10)

        async def resend() -> bool:
            try:
                await side.send(Envelope(source="s", type="t", data={"n": 2}))
            except TransientError:
                return False
            return True

        await eventually(resend, timeout=10, interval=0.2)
    finally:
        await side.stop()
    bodies = [orjson.loads(b) for _, _, b in await asyncio.to_thread(legacy.get_all, queue)]
    assert bodies == [{"n": 1}, {"n": 2}]


async def test_round_trip_legacy_in_and_legacy_out(legacy: Legacy, tmp_path: Path) -> None:
    """A message consumed from one legacy queue and published back keeps its identity."""
    source_q = await asyncio.to_thread(legacy.queue, "rt-in")
    target_q = await asyncio.to_thread(legacy.queue, "rt-out")
    await asyncio.to_thread(legacy.publish, source_q, b'{"n": 5}', message_id="rt-1",
                            type="order.created", correlation_id="c-5",
                            content_type="application/json")
    async with running(legacy, source_q, tmp_path) as (_, ctx):
        await eventually(lambda: ctx.accepted)
    side = outbound(legacy, tmp_path, routing_key=target_q)
    await side.start()
    await side.send(ctx.accepted[0])
    await side.stop()
    [(_, props, body)] = await asyncio.to_thread(legacy.get_all, target_q)
    assert (props.message_id, props.type, props.correlation_id) == ("rt-1", "order.created",
                                                                    "c-5")
    assert props.headers["idempotency-key"] == "rt-1"
    assert orjson.loads(body) == {"n": 5}


def test_settings_hide_the_url_and_need_amqp(legacy: Legacy) -> None:
    s = AmqpInboundSettings.model_validate({"url": "amqp://u:hunter2-pw@h/", "queue": "q"})
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    with pytest.raises(ValueError, match="amqp://"):
        AmqpOutboundSettings.model_validate({"url": "http://h/"})
    with pytest.raises(ValueError, match="separated by commas"):
        AmqpOutboundSettings.model_validate({"url": "amqp://h1/,http://h2/"})


async def test_outbound_on_a_clustered_legacy_broker_uses_a_node_that_answers(
        legacy: Legacy, tmp_path: Path) -> None:
    """The legacy broker's nodes, the first one down: the link connects to the other."""
    with socket.socket() as s:  # a port nobody listens on: a node that is down
        s.bind(("127.0.0.1", 0))
        dead = f"amqp://guest:guest@127.0.0.1:{s.getsockname()[1]}/"
    queue = await asyncio.to_thread(legacy.queue, "nodes")
    model = AmqpOutboundSettings.model_validate(
        {"url": f"{dead},{legacy.url}", "exchange": "", "routing_key": queue})
    side = AmqpOutbound(model, OutboundContext(name="erp-out", config_dir=tmp_path,
                                               http=lambda: None))  # type: ignore[arg-type,return-value]
    await side.start()
    try:
        for _ in range(3):  # whichever node it tried first
            await side.send(Envelope(source="shop", type="t", data={"n": 1}))
    finally:
        await side.stop()
    assert len(await asyncio.to_thread(legacy.get_all, queue)) == 3


# -- the adapter test kit's outbound contract -------------------------------------------------


_LEGACY: Legacy | None = None


@pytest.fixture(autouse=True)
def _legacy_for_contract(legacy: Legacy) -> None:
    global _LEGACY
    _LEGACY = legacy


class TestAmqpOutboundContract(OutboundContract):
    spec = SPEC
    settings = {"url": "amqp://guest:guest@127.0.0.1:5672/", "routing_key": "unused"}

    @contextlib.asynccontextmanager
    async def accepting_peer(self) -> AsyncIterator[OutboundPeer]:
        assert _LEGACY is not None
        legacy = _LEGACY
        queue = await asyncio.to_thread(legacy.queue, "kit")
        seen: list[Delivered] = []

        async def delivered() -> list[Delivered]:
            for _, props, body in await asyncio.to_thread(legacy.get_all, queue):
                seen.append(Delivered((props.headers or {}).get("idempotency-key"), body))
            return seen

        yield OutboundPeer(settings={"url": legacy.url, "routing_key": queue},
                           delivered=delivered)

    @contextlib.asynccontextmanager
    async def failing_peer(self, kind: str) -> AsyncIterator[OutboundPeer]:
        assert _LEGACY is not None
        exchange = await asyncio.to_thread(_LEGACY.exchange, "kit-unbound")
        yield OutboundPeer(settings={"url": _LEGACY.url, "exchange": exchange,
                                     "unroutable": kind})
