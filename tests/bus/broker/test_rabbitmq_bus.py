"""The RabbitMQ bus against the real broker: confirms, returns, retry tiers, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit

import pika
import pytest
from esbtest.broker import RabbitScope
from esbtest.proxy import TcpProxy

from esb.bus.broker.base import DEAD_LETTER, Message, destination_address
from esb.bus.broker.connection import RECV_BYTES
from esb.bus.broker.rabbitmq import RabbitBus
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, PublishRejected


def env(i: int) -> Envelope:
    return Envelope(source="test", type="t", data={"i": i}, idempotencykey=f"k{i}")


async def collect(bus: RabbitBus, address: str, n: int, timeout: float = 20,
                  ack: bool = True) -> list[Envelope]:
    got: list[Envelope] = []
    done = asyncio.Event()

    async def handler(msg: Message) -> None:
        got.append(msg.envelope)
        if ack:
            msg.ack()
        if len(got) >= n:
            done.set()

    await bus.consume(address, handler, prefetch=200)
    await asyncio.wait_for(done.wait(), timeout)
    return got


async def test_publish_is_confirmed_and_consumed_with_properties(rabbit: RabbitScope) -> None:
    rabbit.destinations.add("a")
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a"])
    try:
        await asyncio.gather(*(bus.publish(destination_address("a"), env(i))
                               for i in range(500)))
        got = await collect(bus, destination_address("a"), 500)
        assert sorted(e.data["i"] for e in got) == list(range(500))
    finally:
        await bus.close()
    # what RabbitMQ's own tools see: the AMQP properties of a message
    await _publish_one_and_inspect(rabbit)


async def test_payloads_of_every_size_cross_the_broker_intact(rabbit: RabbitScope) -> None:
    """Bodies around the read size and the frame size (the broker splits a body over frames
    of frame_max), in one burst with small ones between them: each arrives byte for byte."""
    rabbit.destinations.add("a")
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a"])
    sizes = [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 131072, 131073, 300_000, 1_000_000]
    envelopes = []
    for round_ in range(3):
        envelopes += [Envelope(source="test", type="t",
                               data=bytes((i * 7 + size + round_) % 251 for i in range(size)),
                               datacontenttype="application/octet-stream") for size in sizes]
        envelopes += [env(1000 * round_ + i) for i in range(100)]
    sent = {e.id: e.data_bytes() for e in envelopes}
    # (the bus reads the broker in large chunks: the frame loop is the one under test)
    assert bus._link.connection._transport._MAX_RECV_BYTES == RECV_BYTES  # type: ignore[union-attr]
    try:
        await asyncio.gather(*(bus.publish(destination_address("a"), e) for e in envelopes))
        got = await collect(bus, destination_address("a"), len(sent), timeout=60)
        assert {e.id: e.data_bytes() for e in got} == sent
    finally:
        await bus.close()


async def _publish_one_and_inspect(rabbit: RabbitScope) -> None:
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a"])
    e = Envelope(source="shop", type="order.created", correlationid="c-1", data={"x": 1})
    await bus.publish(destination_address("a"), e)
    await bus.close()
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    ch = conn.channel()
    method, props, body = ch.basic_get(rabbit.topology().queue("dest.a"), auto_ack=True)
    conn.close()
    assert method is not None
    assert props.message_id == e.id and props.correlation_id == "c-1"
    assert props.type == "order.created" and props.delivery_mode == 2
    assert props.content_type == "application/cloudevents+json"
    assert Envelope.from_json(body) == e


async def test_unroutable_publish_fails_instead_of_vanishing(rabbit: RabbitScope) -> None:
    rabbit.destinations.add("a")
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a"])
    try:
        with pytest.raises(PublishRejected, match="NO_ROUTE"):
            await bus.publish(destination_address("not-declared"), env(1))
        await bus.publish(destination_address("a"), env(2))  # the channel is still usable
    finally:
        await bus.close()


async def test_delayed_publish_waits_its_delay_not_a_tier(rabbit: RabbitScope) -> None:
    """Delays that are no tier (0.1 s, 3.3 s: 2 + 1 + 0.25 + the rest in process) and one
    that is: each arrives at its due time, never before it."""
    rabbit.destinations.add("a")
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a"])
    delays = {1: 0.1, 2: 2.0, 3: 3.3}
    arrived: dict[int, float] = {}
    done = asyncio.Event()

    async def handler(msg: Any) -> None:
        arrived[msg.envelope.data["i"]] = time.monotonic() - t0
        msg.ack()
        if len(arrived) == len(delays):
            done.set()

    try:
        await bus.consume(destination_address("a"), handler, prefetch=10)
        t0 = time.monotonic()
        for i, delay in delays.items():
            assert await bus.publish_delayed(destination_address("a"), env(i), delay) == delay
        await asyncio.wait_for(done.wait(), 15)
        late = {i: round(arrived[i] - d, 3) for i, d in delays.items()}
        print(f"\nlateness per delay (s): {late}")
        assert all(v >= -0.005 for v in late.values()), late
        assert all(v < 1.0 for v in late.values()), late  # loose: a shared, noisy machine
    finally:
        await bus.close()


async def test_unacked_messages_come_back_after_a_crash(rabbit: RabbitScope) -> None:
    rabbit.destinations.add("a")
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a"])
    await asyncio.gather(*(bus.publish(destination_address("a"), env(i)) for i in range(50)))
    await collect(bus, destination_address("a"), 50, ack=False)
    await bus.close()  # like a dead process: nothing was acked
    bus2 = RabbitBus(rabbit.url, rabbit.topology())
    await bus2.start(["a"])
    try:
        again = await collect(bus2, destination_address("a"), 50)
        assert sorted(e.data["i"] for e in again) == list(range(50))
    finally:
        await bus2.close()


async def test_lost_connection_loses_nothing_and_never_acks_twice(rabbit: RabbitScope) -> None:
    """Cut every broker connection mid-stream: publishes in flight fail loudly (the sender
    retries), consumers resume, and every confirmed message is delivered."""
    rabbit.destinations.add("a")
    u = urlsplit(rabbit.url)
    proxy = TcpProxy(u.hostname or "127.0.0.1", u.port or 5672)
    url = f"amqp://{u.username}:{u.password}@127.0.0.1:{proxy.port}{u.path or '/'}"
    bus = RabbitBus(url, rabbit.topology(), heartbeat=5)
    await bus.start(["a"])
    confirmed: set[int] = set()
    received: dict[int, int] = {}

    async def handler(msg: Message) -> None:
        await asyncio.sleep(0.001)
        i = msg.envelope.data["i"]
        received[i] = received.get(i, 0) + 1
        msg.ack()

    await bus.consume(destination_address("a"), handler, prefetch=100)

    async def publish(i: int) -> None:
        await asyncio.sleep(i / 1000)  # a steady stream over ~2 s, so the cuts land mid-way
        for _ in range(300):  # a sender that retries until accepted (~30 s, as the cutter
            # allows each reconnect: one may take a while on a busy host)
            try:
                await bus.publish(destination_address("a"), env(i))
                confirmed.add(i)
                return
            except (BusUnavailable, PublishRejected):
                await asyncio.sleep(0.1)

    async def cutter() -> None:
        for n in range(2):
            # each cut hits a live connection (a reconnect may take a while on a busy host)
            deadline = time.monotonic() + 30
            while bus.connects < n + 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            proxy.cut()

    try:
        await asyncio.gather(cutter(), *(publish(i) for i in range(2000)))
        # Everything may be through before the link is back from the second cut: wait for
        # that reconnect too (a double ack would show as one more connection after it).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (confirmed <= set(received)
                                                   and bus.connects >= 3 and bus.connected):
            await asyncio.sleep(0.1)
    finally:
        await bus.close()
        proxy.close()
    assert bus.connects == 3, "both cuts should have forced a reconnect"
    assert confirmed == set(range(2000))
    assert not confirmed - set(received), "a confirmed message was lost"
    # Redeliveries after a cut are possible (at-least-once), a double ack is not: it would
    # close the channel with PRECONDITION_FAILED and show up as a third connection loss.
    print(f"\nduplicates after 2 cuts: {sum(c - 1 for c in received.values())}")


async def test_garbage_on_a_queue_is_quarantined_in_the_dlq(rabbit: RabbitScope) -> None:
    rabbit.destinations.add("a")
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a"])
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    conn.channel().basic_publish(rabbit.topology().deliver_exchange, "dest.a", b"not json")
    conn.close()
    handled: list[Any] = []

    async def handler(msg: Message) -> None:
        handled.append(msg)

    try:
        await bus.consume(destination_address("a"), handler, prefetch=10)
        dead = await collect(bus, DEAD_LETTER, 1)
        assert dead[0].data == b"not json"
        assert "not a valid envelope" in (dead[0].esberror or "")
        assert handled == []
    finally:
        await bus.close()


async def test_quorum_topology_declares_its_limits_and_carries_messages(
        rabbit: RabbitScope) -> None:
    from esb.bus.broker.topology import Topology

    rabbit.destinations.add("a")
    topo = Topology(rabbit.prefix, "quorum")
    args = topo.destination_arguments()
    assert args["x-delivery-limit"] == 1000
    assert args["x-dead-letter-routing-key"] == "dlq"
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert topo.holding_arguments()["x-delivery-limit"] >= 10**9
    assert topo.retry_arguments(2)["x-dead-letter-strategy"] == "at-least-once"
    bus = RabbitBus(rabbit.url, topo)
    await bus.start(["a"])
    try:
        # one plain, one through a quorum tier queue (at-least-once dead-lettering)
        await bus.publish(destination_address("a"), env(1))
        await bus.publish_delayed(destination_address("a"), env(2), 0.6)
        got = await collect(bus, destination_address("a"), 2)
        assert [e.data for e in got] == [{"i": 1}, {"i": 2}]
        # browsing the DLQ gives messages back: 25 browses must not drop a dead letter
        # (RabbitMQ 4's default limit is 20), because the queue carries its own limit
        await bus.publish(DEAD_LETTER, env(3))
        for _ in range(25):
            assert [e.data for e in await bus.browse(DEAD_LETTER, 10)] == [{"i": 3}]
        declared = subprocess.run(["rabbitmqctl", "list_queues", "-q", "--no-table-headers",
                                   "name", "arguments"], capture_output=True, text=True,
                                  timeout=60).stdout
        line = next(row for row in declared.splitlines()
                    if row.split("\t")[0] == topo.queue(DEAD_LETTER))
        assert '"x-delivery-limit",1000000000' in line, line
    finally:
        await bus.close()


async def test_a_queue_declared_earlier_with_other_arguments_is_kept(
        rabbit: RabbitScope) -> None:
    """An older esb declared the quorum DLQ without a delivery limit: RabbitMQ will not change
    a queue's arguments, so the bus keeps that queue (and its binding) and starts anyway."""
    from esb.bus.broker.topology import Topology

    rabbit.destinations.add("a")
    topo = Topology(rabbit.prefix, "quorum")
    params = pika.URLParameters(rabbit.url)
    conn = pika.BlockingConnection(params)
    conn.channel().queue_declare(topo.queue(DEAD_LETTER), durable=True,
                                 arguments={"x-queue-type": "quorum"})
    conn.close()
    bus = RabbitBus(rabbit.url, topo)
    await bus.start(["a"])
    try:
        await bus.publish(DEAD_LETTER, env(1))
        assert [e.data for e in await bus.browse(DEAD_LETTER, 10)] == [{"i": 1}]
    finally:
        await bus.close()


async def test_publish_atomically_on_quorum_queues_confirms_records_after_copies(
        rabbit: RabbitScope) -> None:
    """On quorum queues no transaction is used (the broker answered commit-ok for messages a
    quorum queue never got once its leader moved): every copy is confirmed, and a record
    only once every copy is; when a copy fails, its record is not published."""
    from esb.bus.broker.topology import Topology

    rabbit.destinations.update({"a", "b"})
    topo = Topology(rabbit.prefix, "quorum")
    bus = RabbitBus(rabbit.url, topo)
    await bus.start(["a", "b"])
    record_queue = f"{rabbit.prefix}.records"
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        conn.channel().queue_declare(record_queue, durable=True)
        depth = conn.channel().queue_declare
        parts = [(destination_address("a" if i % 2 else "b"), env(i)) for i in range(20)]
        await bus.publish_atomically(parts, [(record_queue, b'{"done": 1}')])
        assert depth(topo.queue("dest.a"), passive=True).method.message_count == 10
        assert depth(topo.queue("dest.b"), passive=True).method.message_count == 10
        assert depth(record_queue, passive=True).method.message_count == 1
        # A copy no queue takes: no record after it (a transaction would commit the record
        # and report the returned copy only afterwards).
        with pytest.raises(PublishRejected):
            await bus.publish_atomically([(destination_address("nowhere"), env(99))],
                                         [(record_queue, b'{"done": 2}')])
        assert depth(record_queue, passive=True).method.message_count == 1
    finally:
        with contextlib.suppress(Exception):
            conn.channel().queue_delete(record_queue)
        conn.close()
        await bus.close()


async def test_publish_atomically_is_all_or_nothing(rabbit: RabbitScope) -> None:
    """A transaction of many envelopes plus a raw record lands whole; a fault in the middle of
    one (a message the broker refuses closes the channel before the commit) leaves nothing."""
    rabbit.destinations.update({"a", "b"})
    bus = RabbitBus(rabbit.url, rabbit.topology())
    await bus.start(["a", "b"])
    record_queue = f"{rabbit.prefix}.records"
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        conn.channel().queue_declare(record_queue, durable=True)
        parts = [(destination_address("a" if i % 2 else "b"), env(i)) for i in range(200)]
        await bus.publish_atomically(parts, [(record_queue, b'{"done": 1}')])
        depth = conn.channel().queue_declare
        assert depth(rabbit.topology().queue("dest.a"), passive=True).method.message_count == 100
        assert depth(record_queue, passive=True).method.message_count == 1
        # the fault: the 101st message goes to a queue that does not exist (mandatory: the
        # commit would report it) — here to an exchange that does not exist, which closes
        # the channel at once; the transaction's earlier publishes must not survive.
        broken = bus._tx  # the pool the bus commits through
        good = [(rabbit.topology().deliver_exchange, destination_address("a"),
                 env(1000 + i).to_json(), pika.BasicProperties(delivery_mode=2))
                for i in range(100)]
        bad = [("no-such-exchange-" + rabbit.prefix, "x", b"{}", pika.BasicProperties())]
        with pytest.raises(BusUnavailable):
            await broken.commit([*good, *bad, *good])
        await asyncio.sleep(0.5)
        assert depth(rabbit.topology().queue("dest.a"), passive=True).method.message_count == 100
        # the pool heals: the next transaction goes through
        await bus.publish_atomically([(destination_address("b"), env(5000))])
        assert depth(rabbit.topology().queue("dest.b"), passive=True).method.message_count == 101
    finally:
        with contextlib.suppress(Exception):
            conn.channel().queue_delete(record_queue)
        conn.close()
        await bus.close()



async def test_replies_through_the_broker_in_process_and_to_a_caller_gone(
        rabbit: RabbitScope, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply to another instance crosses the broker (unconfirmed); one to this instance's
    own callers is handed over in process, the envelope itself; one to an instance that is
    gone comes back from the broker, is logged and handed to the replier's ``returned``, and
    the replier carries on."""
    from esb.bus.broker import rabbitmq

    logged: list[tuple[str, dict[str, Any]]] = []
    dropped = asyncio.Event()

    class Log:
        def __getattr__(self, name: str) -> Any:
            return getattr(rabbitmq.structlog.get_logger("esb.bus.rabbitmq"), name)

        def info(self, event: str, **kw: Any) -> None:
            if event == "the caller is gone; reply dropped":
                logged.append((event, kw))
                dropped.set()

    monkeypatch.setattr(rabbitmq, "log", Log())
    rabbit.destinations.add("a")
    caller, replier = (RabbitBus(rabbit.url, rabbit.topology()) for _ in range(2))
    got: dict[str, list[Envelope]] = {"caller": [], "replier": []}
    arrived = {name: asyncio.Event() for name in got}

    def taker(name: str) -> Any:
        def take(reply: Envelope) -> None:
            got[name].append(reply)
            arrived[name].set()
        return take

    await caller.start(["a"])
    await replier.start(["a"])
    try:
        at_caller = await caller.open_replies(taker("caller"))
        at_replier = await replier.open_replies(taker("replier"))
        remote, local = env(1), env(2)
        await replier.reply(at_caller, remote)
        await replier.reply(at_replier, local)
        await asyncio.wait_for(arrived["caller"].wait(), 20)
        await asyncio.wait_for(arrived["replier"].wait(), 20)
        assert got["caller"] == [remote] and got["caller"][0] is not remote
        assert got["replier"][0] is local
        await caller.close()
        reasons: list[str] = []
        await replier.reply(at_caller, env(3), reasons.append)  # nobody takes it: returned
        await asyncio.wait_for(dropped.wait(), 20)
        detail = logged[0][1]
        assert detail["address"] == at_caller and "NO_ROUTE" in detail["reason"]
        assert reasons == [detail["reason"]]  # and the replier heard why
        await replier.publish(destination_address("a"), env(4))  # still connected and usable
    finally:
        await caller.close()
        await replier.close()
