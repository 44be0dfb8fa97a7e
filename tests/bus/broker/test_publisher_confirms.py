"""ConfirmedPublisher matches the broker's confirms (single, multiple, nack) to the publishes
waiting for them; a new channel fails what waited on the old one. The real broker's side is
in test_rabbitmq_bus.py; here the channel is a stand-in that records publishes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pika
import pytest

from esb.bus.broker.publisher import ConfirmedPublisher
from esb.bus.errors import BusUnavailable, PublishRejected


class Channel:
    is_open = True

    def __init__(self) -> None:
        self.published: list[str] = []
        self.confirm: Any = None

    def confirm_delivery(self, ack_nack_callback: Any, callback: Any) -> None:
        self.confirm = ack_nack_callback
        callback(None)

    def add_on_return_callback(self, callback: Any) -> None:
        pass

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
