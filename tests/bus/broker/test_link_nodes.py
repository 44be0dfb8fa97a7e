"""One broker link over several nodes, and a link that finds out by itself that its broker went
silent. The "nodes" are TCP proxies in front of the shared broker: one can be refused, cut or
made silent without touching the broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from esbtest.proxy import TcpProxy
from esbtest.waiting import until

from esb.bus.broker import connection
from esb.bus.broker.connection import AmqpLink, broker_urls, redact
from esb.bus.broker.publisher import ConfirmedPublisher
from esb.bus.config.model import BusConfig
from esb.bus.errors import BusUnavailable, PublishRejected


@pytest.fixture
def nodes(rabbit_url: str) -> Iterator[list[Any]]:
    proxies = [TcpProxy.for_broker(rabbit_url) for _ in range(3)]
    yield proxies
    for p in proxies:
        p.close()


async def nothing(link: AmqpLink) -> None:
    return None



def test_url_forms() -> None:
    assert broker_urls("amqp://a:1/") == ["amqp://a:1/"]
    assert broker_urls("amqp://a:1/, amqp://b:2/") == ["amqp://a:1/", "amqp://b:2/"]
    assert broker_urls(["amqp://a:1/", "amqp://b:2/,amqp://c:3/"]) == \
        ["amqp://a:1/", "amqp://b:2/", "amqp://c:3/"]
    assert redact("amqp://u:secret@a:1/,amqp://u:secret@b:2/") == "a:1,b:2 vhost /"
    with pytest.raises(ValueError):
        broker_urls(" , ")
    as_list = BusConfig(url=["amqp://u:p@a:1/", "amqp://u:p@b:2/"])
    as_text = BusConfig(url="amqp://u:p@a:1/, amqp://u:p@b:2/")
    assert as_list.url == as_text.url == "amqp://u:p@a:1/,amqp://u:p@b:2/"
    assert as_list.nodes == ["amqp://u:p@a:1/", "amqp://u:p@b:2/"]
    # A cluster's defaults: replicated queues; one node keeps classic ones unless told.
    assert as_list.queue_type == "quorum"
    assert BusConfig(url="amqp://a/").queue_type == "classic"
    assert BusConfig(url=["amqp://a/", "amqp://b/"], queue_type="classic").queue_type == \
        "classic"
    with pytest.raises(ValueError, match="node 2"):
        BusConfig(url="amqp://a/,http://b/")
    with pytest.raises(ValueError):
        BusConfig(url=[])


async def test_connects_to_a_reachable_node_and_moves_on_when_it_dies(nodes: Any) -> None:
    nodes[0].stop_accepting()  # one node is down from the start
    link = AmqpLink([p.amqp_url for p in nodes], name="test nodes", on_connected=nothing)
    try:
        for _ in range(4):  # whichever node it starts with, it ends up on a live one
            await link.start()
            assert link.connected and link.url != nodes[0].amqp_url
            await link.close()
        await link.start()
        first = next(p for p in nodes if p.amqp_url == link.url)
        before = link.connects
        first.stop_accepting()
        first.cut()  # its node dies
        assert await until(lambda: link.connected and link.url != first.amqp_url)
        assert link.url == nodes[3 - nodes.index(first)].amqp_url  # the one node still up
        assert link.connects == before + 1
    finally:
        await link.close()


async def test_no_node_reachable_names_every_node(nodes: Any) -> None:
    for p in nodes:
        p.stop_accepting()
    link = AmqpLink([p.amqp_url for p in nodes], name="test nodes", on_connected=nothing,
                    reconnect=False)
    with pytest.raises(BusUnavailable) as info:
        await link.start()
    assert all(f"127.0.0.1:{p.port}" in str(info.value) for p in nodes)
    assert "guest" not in str(info.value)


async def test_a_silent_link_is_suspect_then_rebuilt_on_another_node(nodes: Any) -> None:
    link = AmqpLink([p.amqp_url for p in nodes[:2]], name="test silence", on_connected=nothing,
                    dead_after=3.0)
    await link.start()
    try:
        assert link.healthy
        silent = next(p for p in nodes if p.amqp_url == link.url)
        silent.blackhole()
        t0 = time.monotonic()
        assert await until(lambda: not link.healthy, 10)
        suspect_after = time.monotonic() - t0
        assert await until(lambda: link.connected and link.url != silent.amqp_url, 30)
        moved_after = time.monotonic() - t0
        assert link.healthy
        print(f"\nsilent node: suspect after {suspect_after:.2f}s, on the other node after "
              f"{moved_after:.2f}s (dead_after 3s)")
        assert suspect_after < moved_after
    finally:
        await link.close()


async def test_a_silent_node_times_out_cleanly(nodes: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that takes the TCP connection and never answers the AMQP handshake: the attempt
    ends after ``CONNECT_TIMEOUT`` with a reason, and ending it raises nothing in the event
    loop (before, pika's stack asserted on a stream ended without a reason: a traceback in
    the daemon's log on every such attempt)."""
    monkeypatch.setattr(connection, "CONNECT_TIMEOUT", 0.5)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    nodes[0].blackhole()
    link = AmqpLink(nodes[0].amqp_url, name="test silent", on_connected=nothing,
                    reconnect=False, probe=False)
    with pytest.raises(BusUnavailable, match="timed out connecting"):
        await link.start()
    nodes[0].restore()
    await asyncio.sleep(0.5)  # the aborted attempt's clean-up runs meanwhile
    assert not unhandled, unhandled
    await link.start()  # the node answers again: a new attempt gets in
    assert link.connected
    await link.close()


async def test_a_recovering_channel_the_broker_closes_rebuilds_the_link(rabbit_url: str) -> None:
    """A channel opened with ``recover=True`` that the broker closes (here: a passive declare
    of a queue that does not exist, 404) makes the link reconnect whole; one without it
    leaves the connection as it is."""
    channels: list[Any] = []

    async def open_channels(link: AmqpLink) -> None:
        channels[:] = [await link.channel(recover=True), await link.channel()]

    link = AmqpLink(rabbit_url, name="test recover", on_connected=open_channels, probe=False)
    await link.start()
    try:
        plain = channels[1]
        plain.queue_declare("esb-test-no-such-queue", passive=True)
        await link.closed(plain)
        assert link.connects == 1 and link.connected
        channels[0].queue_declare("esb-test-no-such-queue", passive=True)
        assert await until(lambda: link.connects == 2 and link.connected)
    finally:
        await link.close()


async def test_a_refused_publish_names_the_queue_that_refused_it(rabbit_url: str) -> None:
    """A nack says which queue refused: with a stream or quorum queue without a leader every
    publish to it is refused, and the operator's first question is which one."""
    queue = f"esbtest-nack-{uuid.uuid4().hex[:8]}"
    publisher = ConfirmedPublisher()

    async def declare(link: AmqpLink) -> None:
        await publisher.open(link)
        channel = publisher.channel
        assert channel is not None
        # A queue that takes nothing: every publish to it is nacked.
        await link.call(channel.queue_declare, queue, exclusive=True,
                        arguments={"x-max-length": 0, "x-overflow": "reject-publish"})

    link = AmqpLink(rabbit_url, name="test nack", on_connected=declare)
    try:
        await link.start()
        with pytest.raises(PublishRejected, match=f"refused the message for {queue} "):
            await publisher.publish("", queue, b"{}", pika.BasicProperties(message_id="m1"),
                                    timeout=10)
    finally:
        await link.close()
