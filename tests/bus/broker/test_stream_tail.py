"""StreamTail and SyncMarker without a broker: where a tail starts, where it resumes, what it
hands on; when a marker's wait ends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from esb.bus.broker.stream import StreamTail, SyncMarker
from esb.bus.errors import BusError, BusUnavailable
from esb.bus.runtime.trace_rabbitmq import TraceQueryTimeout


class FakeChannel:
    """Records qos, consume and acks as a pika channel would receive them."""

    is_open = True

    def __init__(self) -> None:
        self.consumes: list[dict[str, Any]] = []
        self.acks: list[int] = []
        self.prefetch: int | None = None
        self.on_message: Any = None

    def basic_qos(self, *, prefetch_count: int, callback: Any) -> None:
        self.prefetch = prefetch_count
        callback()

    def basic_consume(self, queue: str, on_message: Any, *, auto_ack: bool,
                      arguments: dict[str, Any], callback: Any) -> None:
        self.consumes.append({"queue": queue, "auto_ack": auto_ack, **arguments})
        self.on_message = on_message
        callback()

    def basic_ack(self, tag: int) -> None:
        self.acks.append(tag)

    def deliver(self, tag: int, offset: int | None, body: bytes) -> None:
        headers = {} if offset is None else {"x-stream-offset": offset}
        self.on_message(self, SimpleNamespace(delivery_tag=tag),
                        SimpleNamespace(headers=headers), body)


class FakeLink:
    async def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        return method(*args, callback=lambda *_: None, **kwargs)


def test_it_starts_where_told_then_resumes_after_the_last_record_and_skips_rereads() -> None:
    read: list[tuple[int | None, bytes]] = []
    tail = StreamTail("p.routes", lambda offset, props, body: read.append((offset, body)),
                      prefetch=7)
    first, again = FakeChannel(), FakeChannel()

    async def scenario() -> None:
        assert await tail.follow(FakeLink(), first, "first") == "first"  # type: ignore[arg-type]
        first.deliver(1, 0, b"a")
        first.deliver(2, 1, b"b")
        # a reconnect: a new channel, and the broker re-sends a record already read
        assert await tail.follow(FakeLink(), again, "first") == 2  # type: ignore[arg-type]
        again.deliver(1, 1, b"b")
        again.deliver(2, 2, b"c")
        again.deliver(3, None, b"no offset")

    asyncio.run(scenario())
    assert first.consumes == [{"queue": "p.routes", "auto_ack": False,
                               "x-stream-offset": "first"}]
    assert again.consumes[0]["x-stream-offset"] == 2 and again.prefetch == 7
    assert read == [(0, b"a"), (1, b"b"), (2, b"c"), (None, b"no offset")]
    assert tail.last_offset == 2
    assert first.acks == [1, 2] and again.acks == [1, 2, 3]  # every delivery acked


async def test_a_sync_marker_waits_for_its_own_record_only() -> None:
    ours, theirs = SyncMarker("i-1"), SyncMarker("i-2")
    assert orjson.loads(ours.body) == {"kind": "sync", "id": ours.id, "by": "i-1",
                                       "at": orjson.loads(ours.body)["at"]}
    assert not ours.read(theirs.body)
    with pytest.raises(TraceQueryTimeout, match="could not read q to its end within 0s; hint"):
        await ours.wait("q", 0, error=TraceQueryTimeout, hint="; hint")
    again = SyncMarker("i-1")
    assert again.read(again.body)
    await again.wait("q", 10)


async def test_a_sync_marker_stops_at_a_closed_channel_or_a_failure() -> None:
    marker, closed = SyncMarker("i-1"), asyncio.get_running_loop().create_future()
    closed.set_result("406 gone")
    with pytest.raises(BusUnavailable, match="reading q failed: 406 gone"):
        await marker.wait("q", 10, closed=closed)
    failed = SyncMarker("i-1")
    failed.fail(BusError("lost"))
    with pytest.raises(BusError, match="lost"):
        await failed.wait("q", 10)
