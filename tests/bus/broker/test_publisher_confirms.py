"""ConfirmedPublisher matches the broker's confirms (single, multiple, nack) to the publishes
waiting for them; a new channel fails what waited on the old one. The real broker's side is
in test_rabbitmq_bus.py; here the channel is a stand-in that records publishes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pika
import pytest

from esb.bus.broker.publisher import ConfirmedPublisher, PublishReturned
from esb.bus.errors import BusUnavailable, PublishRejected


class Channel:
    is_open = True

    def __init__(self) -> None:
        self.published: list[str] = []
        self.confirm: Any = None
        self.returned: Any = None

    def confirm_delivery(self, ack_nack_callback: Any, callback: Any) -> None:
        self.confirm = ack_nack_callback
        callback(None)

    def add_on_return_callback(self, callback: Any) -> None:
        self.returned = callback

    def add_on_close_callback(self, callback: Any) -> None:
        pass

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any,
                      mandatory: bool) -> None:
        self.published.append(routing_key)


class Link:
    def __init__(self) -> None:
        self.channels: list[Channel] = []

    async def channel(self, on_close: Any = None, *, recover: bool = False) -> Channel:
        self.channels.append(Channel())
        return self.channels[-1]

    async def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        method(*args, callback=fut.set_result, **kwargs)
        return await fut


def confirm(channel: Channel, tag: int, *, multiple: bool = False, ack: bool = True) -> None:
    method = (pika.spec.Basic.Ack if ack else pika.spec.Basic.Nack)(delivery_tag=tag,
                                                                     multiple=multiple)
    channel.confirm(SimpleNamespace(method=method))


def give_back(channel: Channel, routing_key: str, message_id: str) -> None:
    """The broker returns a mandatory message it could route nowhere (before its confirm)."""
    channel.returned(channel, SimpleNamespace(routing_key=routing_key, reply_code=312,
                                              reply_text="NO_ROUTE"),
                     SimpleNamespace(message_id=message_id), b"")


async def publishing(publisher: ConfirmedPublisher, n: int) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(publisher.publish(
        "x", f"q{i}", b"{}", pika.BasicProperties(message_id=f"m{i}"), timeout=5))
        for i in range(1, n + 1)]
    await asyncio.sleep(0)
    return tasks


async def test_each_publish_hears_its_own_confirm() -> None:
    link, publisher = Link(), ConfirmedPublisher()
    await publisher.open(link)  # type: ignore[arg-type]
    channel = link.channels[0]
    tasks = await publishing(publisher, 6)
    assert channel.published == [f"q{i}" for i in range(1, 7)]
    confirm(channel, 2)                      # one, out of order
    confirm(channel, 3, multiple=True)       # 1 and 3 (2 is done)
    await asyncio.sleep(0)
    assert [t.done() for t in tasks] == [True, True, True, False, False, False]
    confirm(channel, 5, ack=False)           # a nack for 5 alone
    confirm(channel, 6, multiple=True)       # 4 and 6
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == \
        ["NoneType", "NoneType", "NoneType", "NoneType", "PublishRejected", "NoneType"]
    assert isinstance(results[4], PublishRejected) and "q5" in str(results[4])
    confirm(channel, 6, multiple=True)       # a repeat confirms nothing more
    assert publisher._pending == {} and publisher._by_key == {}


async def test_a_new_channel_fails_what_waited_on_the_old_one() -> None:
    link, publisher = Link(), ConfirmedPublisher()
    await publisher.open(link)  # type: ignore[arg-type]
    old = await publishing(publisher, 3)
    await publisher.open(link)  # reopened: the new channel's tags start at 1 again
    for task in old:
        with pytest.raises(BusUnavailable, match="replaced"):
            await task
    new = await publishing(publisher, 2)
    confirm(link.channels[1], 2, multiple=True)
    assert await asyncio.gather(*new) == [None, None]


async def test_publishing_before_open_is_refused() -> None:
    with pytest.raises(BusUnavailable, match="not connected"):
        await ConfirmedPublisher().publish("x", "q", b"", pika.BasicProperties())


async def test_nacks_returns_and_acks_reach_their_own_publishes() -> None:
    link, publisher = Link(), ConfirmedPublisher()
    await publisher.open(link)  # type: ignore[arg-type]
    channel = link.channels[0]
    tasks = await publishing(publisher, 4)
    give_back(channel, "q4", "m4")
    confirm(channel, 2, multiple=True, ack=False)
    confirm(channel, 4, multiple=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == \
        ["PublishRejected", "PublishRejected", "NoneType", "PublishReturned"]


async def test_a_late_confirm_of_a_replaced_channel_is_not_the_new_ones() -> None:
    link, publisher = Link(), ConfirmedPublisher()
    await publisher.open(link)  # type: ignore[arg-type]
    old = link.channels[0]
    old_tasks = await publishing(publisher, 1)  # tag 1 on the old channel
    await publisher.open(link)  # type: ignore[arg-type]
    with pytest.raises(BusUnavailable, match="replaced"):
        await old_tasks[0]
    new = await publishing(publisher, 1)  # tag 1 again, on the new channel
    confirm(old, 1)
    give_back(old, "q1", "m1")
    await asyncio.sleep(0)
    assert not new[0].done()
    confirm(link.channels[1], 1)
    assert await new[0] is None


async def test_a_retry_with_the_same_id_and_key_keeps_its_own_return() -> None:
    """A retry (after no confirm came in time) repeats the message id and routing key while
    the first publish may still wait: a return goes to the oldest not yet returned."""
    link, publisher = Link(), ConfirmedPublisher()
    await publisher.open(link)  # type: ignore[arg-type]
    channel = link.channels[0]
    props = pika.BasicProperties(message_id="m")
    first = asyncio.create_task(publisher.publish("x", "q", b"", props, timeout=5))
    retry = asyncio.create_task(publisher.publish("x", "q", b"", props, timeout=5))
    await asyncio.sleep(0)
    confirm(channel, 1)  # the first was routed
    give_back(channel, "q", "m")  # the retry was not
    confirm(channel, 2)
    assert await first is None
    with pytest.raises(PublishReturned):
        await retry
    # both returned, both in flight at once: each hears its own
    tasks = [asyncio.create_task(publisher.publish("x", "q", b"", props, timeout=5))
             for _ in range(2)]
    await asyncio.sleep(0)
    give_back(channel, "q", "m")
    give_back(channel, "q", "m")
    confirm(channel, 4, multiple=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["PublishReturned", "PublishReturned"]
    assert publisher._by_key == {}
