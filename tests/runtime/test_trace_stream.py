"""StreamTrace on the real RabbitMQ: two instances on one prefix write the events of one
envelope; either one's query returns all of them in time order. The stream is declared with
its retention arguments; a bus that is down costs the oldest events, counted, never an error."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta

import pika
import pytest
from esbtest.waiting import until
from pika.exceptions import ChannelClosedByBroker

from esb.bus.errors import BusUnavailable
from esb.bus.runtime.trace import TraceRecorder
from esb.bus.runtime.trace_rabbitmq import StreamTrace

pytestmark = pytest.mark.rabbitmq

HOUR = timedelta(hours=1)
Factory = Callable[..., StreamTrace]


@pytest.fixture
def prefix(rabbit_url: str) -> Iterator[str]:
    name = f"esbtest-tr-{uuid.uuid4().hex[:10]}"
    yield name
    conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        conn.channel().queue_delete(f"{name}.trace")
    finally:
        conn.close()


@pytest.fixture
async def traces(rabbit_url: str, prefix: str) -> AsyncIterator[Factory]:
    made: list[StreamTrace] = []

    def make(instance: str, **kw: object) -> StreamTrace:
        t = StreamTrace(rabbit_url, prefix, instance, timeout=5, **kw)  # type: ignore[arg-type]
        made.append(t)
        return t

    yield make
    for t in made:
        await t.close()


async def test_either_instance_sees_every_event_in_time_order(traces: Factory) -> None:
    a, b = traces("inst-a"), traces("inst-b")
    assert isinstance(a, TraceRecorder)
    await a.start()
    await b.start()
    eid, other = str(uuid.uuid4()), str(uuid.uuid4())
    a.record(eid, "accepted", endpoint="shop", version=2)
    a.record(eid, "routed", route="r1", version=2, destination="erp")
    a.record(other, "accepted", endpoint="shop")
    time.sleep(0.002)
    b.record(eid, "attempt", destination="erp", outcome="transient", status=503,
             latency_ms=20.5, error="HTTP 503")
    b.record(eid, "retry-scheduled", destination="erp", attempt=1, retry_in=0.5)
    time.sleep(0.002)
    a.record(eid, "attempt", destination="erp", outcome="delivered", status=200,
             latency_ms=3.25)
    a.record(eid, "delivered", destination="erp", status=200, latency_ms=3.25, attempt=2)
    await b.flush()  # a flushes its own on query; b's would otherwise wait ≤ 200 ms

    from_a = await a.query(eid, HOUR)
    from_b = await b.query(eid, HOUR)
    steps = ["accepted", "routed", "attempt", "retry-scheduled", "attempt", "delivered"]
    assert [e.step for e in from_a] == steps
    assert [(e.step, e.instance, e.at) for e in from_b] == \
        [(e.step, e.instance, e.at) for e in from_a]
    assert [e.instance for e in from_a] == ["inst-a", "inst-a", "inst-b", "inst-b", "inst-a",
                                            "inst-a"]
    assert [e.at for e in from_a] == sorted(e.at for e in from_a)
    assert from_a[2].detail == {"destination": "erp", "outcome": "transient", "status": 503,
                                "latency_ms": 20.5, "error": "HTTP 503"}
    assert [e.step for e in await b.query(other, HOUR)] == ["accepted"]
    assert await a.query(str(uuid.uuid4()), HOUR) == []
    assert a.dropped == b.dropped == 0 and a.published == 5 and b.published == 2
    # several envelopes in one read: each one's events as query gives them
    nobody = str(uuid.uuid4())
    many = await b.query_many([eid, other, nobody], HOUR)
    assert many.keys() == {eid, other, nobody}
    assert [(e.step, e.instance, e.at) for e in many[eid]] == \
        [(e.step, e.instance, e.at) for e in from_a]
    assert [e.step for e in many[other]] == ["accepted"] and many[nobody] == []


async def test_a_step_recorded_late_keeps_the_time_it_happened(traces: Factory) -> None:
    a, b = traces("inst-a"), traces("inst-b")
    await a.start()
    await b.start()
    eid = str(uuid.uuid4())
    happened = time.time()
    time.sleep(0.002)
    b.record(eid, "attempt", destination="erp", outcome="delivered")
    await b.flush()  # b's event reaches the stream first ...
    a.record(eid, "accepted", at=happened, endpoint="shop")  # ... a's, stamped earlier, later
    await a.flush()
    events = await b.query(eid, HOUR)
    assert [(e.step, e.instance) for e in events] == [("accepted", "inst-a"),
                                                      ("attempt", "inst-b")]
    assert abs(events[0].at.timestamp() - happened) < 1e-3


async def test_the_flusher_publishes_without_being_asked(traces: Factory) -> None:
    a, b = traces("inst-a"), traces("inst-b", flush_interval=0.05)
    await a.start()
    await b.start()
    eid = str(uuid.uuid4())
    b.record(eid, "accepted", detail={1: "non-str key"}, obj=object())  # encoded, not fatal
    assert await until(lambda: b.published)
    assert b.published == 1 and b.stats()["buffered"] == 0
    (event,) = await a.query(eid, HOUR)
    assert event.detail["detail"] == {"1": "non-str key"}
    assert event.detail["obj"].startswith("<object object")


async def test_the_since_window_is_applied(traces: Factory) -> None:
    a = traces("inst-a")
    await a.start()
    eid = str(uuid.uuid4())
    real = time.time
    try:
        time.time = lambda: real() - 2 * 3600  # type: ignore[assignment]
        a.record(eid, "accepted")
    finally:
        time.time = real  # type: ignore[assignment]
    a.record(eid, "delivered")
    assert [e.step for e in await a.query(eid, HOUR)] == ["delivered"]
    assert [e.step for e in await a.query(eid, timedelta(hours=3))] == ["accepted",
                                                                         "delivered"]


async def test_the_stream_is_declared_with_retention(rabbit_url: str, prefix: str,
                                                     traces: Factory) -> None:
    t = traces("inst-a", retention="6h")
    await t.start()
    assert t.arguments == {"x-queue-type": "stream", "x-max-age": "6h",
                           "x-stream-max-segment-size-bytes": 8_000_000,
                           "x-max-length-bytes": 4 * 2**30}
    conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        conn.channel().queue_declare(f"{prefix}.trace", durable=True, arguments=t.arguments)
        with pytest.raises(ChannelClosedByBroker) as refused:
            conn.channel().queue_declare(f"{prefix}.trace", durable=True,
                                         arguments={**t.arguments, "x-max-age": "7D"})
        assert refused.value.reply_code == 406  # so the declared x-max-age is 6h
    finally:
        conn.close()
    # An instance configured differently keeps working on the existing stream (warned).
    other = traces("inst-b", retention="7D")
    await other.start()
    other.record("x", "accepted")
    await other.flush()
    assert other.published == 1
    with pytest.raises(ValueError, match="x-max-age"):
        StreamTrace(rabbit_url, prefix, "bad", retention="1 day")


async def test_a_bus_that_is_down_drops_the_oldest_and_counts_them() -> None:
    t = StreamTrace("amqp://guest:guest@127.0.0.1:1/", "esbtest-none", "inst-a",
                    buffer_limit=10, timeout=2)
    with pytest.raises(BusUnavailable):
        await t.start()
    for n in range(25):
        t.record("e", "attempt", attempt=n)
    assert t.stats()["buffered"] == 10 and t.dropped == 15
    assert [e[3]["attempt"] for e in t._buf] == list(range(15, 25))
    with pytest.raises(BusUnavailable):
        await t.query("e", HOUR)
    await t.close()
