"""The embedded bus: in-process queues for trying esb out and for single-process development.

Not durable: whatever is queued is gone when the process stops (the daemon says so loudly).
It keeps the same contract as RabbitMQ otherwise (ack ownership, redelivery of un-acked
messages when a consumer gives them back, delayed publishes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from esb.bus.broker.base import (
    DEAD_LETTER,
    UNROUTABLE,
    Handler,
    OnReply,
    OnReturned,
    Progress,
    Select,
    destination_addresses,
)
from esb.bus.envelope import Envelope, new_id
from esb.bus.errors import BusUnavailable, PublishRejected


@dataclass
class EmbeddedMessage:
    envelope: Envelope
    _queue: asyncio.Queue[tuple[bytes, bool]]
    _body: bytes
    redelivered: bool = False
    _done: bool = field(default=False, repr=False)
    #: The process is the broker: a message never outlives its connection.
    alive: bool = True

    def ack(self) -> None:
        self._done = True

    def requeue(self) -> None:
        if not self._done:
            self._done = True
            self._queue.put_nowait((self._body, True))


class EmbeddedBus:
    durable = False

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[tuple[bytes, bool]]] = {}
        self._consumers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._open = False
        self._repliers: dict[str, OnReply] = {}

    @property
    def connected(self) -> bool:
        return self._open

    async def start(self, destinations: Sequence[str],
                    partitions: Mapping[str, int] | None = None) -> None:
        parts = partitions or {}
        for address in (UNROUTABLE, DEAD_LETTER,
                        *(a for d in destinations
                          for a in destination_addresses(d, parts.get(d, 0)))):
            self._queues.setdefault(address, asyncio.Queue())
        self._open = True

    def _queue(self, address: str) -> asyncio.Queue[tuple[bytes, bool]]:
        if not self._open:
            raise BusUnavailable("the embedded bus is not running")
        try:
            return self._queues[address]
        except KeyError:
            raise PublishRejected(f"no queue for address {address!r}") from None

    async def publish(self, address: str, envelope: Envelope) -> None:
        # Serialize like a broker would, so both buses exercise the same code paths.
        self._queue(address).put_nowait((envelope.to_json(), False))

    async def publish_atomically(self, publishes: Sequence[tuple[str, Envelope]],
                                 records: Sequence[tuple[str, bytes]] = ()) -> None:
        # One process, no await between the puts: all of them or (on an error building a
        # body) none. The embedded bus keeps no records of its own state.
        bodies = [(self._queue(address), envelope.to_json()) for address, envelope in publishes]
        for queue, body in bodies:
            queue.put_nowait((body, False))

    async def publish_in_order(self, publishes: Sequence[tuple[str, Envelope]],
                               records: Sequence[tuple[str, bytes]] = ()) -> None:
        for address, envelope in publishes:
            await self.publish(address, envelope)

    async def publish_delayed(self, address: str, envelope: Envelope, delay: float) -> float:
        queue = self._queue(address)
        body = envelope.to_json()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            queue.put_nowait((body, False))

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)
        return delay

    async def consume(self, address: str, handler: Handler, prefetch: int) -> None:
        queue = self._queue(address)
        self._consumers.append(asyncio.create_task(self._pump(queue, handler, prefetch)))

    async def _pump(self, queue: asyncio.Queue[tuple[bytes, bool]], handler: Handler,
                    prefetch: int) -> None:
        slots = asyncio.Semaphore(prefetch)
        tasks: set[asyncio.Task[None]] = set()
        while True:
            await slots.acquire()
            body, redelivered = await queue.get()
            msg = EmbeddedMessage(Envelope.from_json(body), queue, body, redelivered)

            async def run(m: EmbeddedMessage = msg) -> None:
                try:
                    await handler(m)
                finally:
                    m.requeue()  # no-op once acked; a crashed handler gives it back
                    slots.release()

            task = asyncio.create_task(run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def fail_pending(self, reason: str) -> None:
        return None  # a publish here never waits for anyone

    async def stop_consuming(self) -> None:
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._consumers.clear()

    async def depths(self) -> dict[str, int]:
        return {**{address: q.qsize() for address, q in self._queues.items()},
                "retrying": len(self._timers)}

    def _drain(self, address: str) -> tuple[asyncio.Queue[tuple[bytes, bool]],
                                            list[tuple[bytes, bool]]]:
        queue = self._queue(address)
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return queue, items

    async def browse(self, address: str, limit: int) -> list[Envelope]:
        queue, items = self._drain(address)
        for item in items:  # put back, same order (no await in between: atomic on the loop)
            queue.put_nowait(item)
        return [Envelope.from_json(body) for body, _ in items[:limit]]

    async def take(self, address: str, select: Select,
                   handle: Callable[[Envelope], Awaitable[None]], limit: int | None = None,
                   progress: Progress | None = None) -> tuple[int, int]:
        queue, items = self._drain(address)
        kept: list[tuple[bytes, bool]] = []
        handled = 0
        try:
            for i, item in enumerate(items):
                env = Envelope.from_json(item[0])
                if (limit is None or handled < limit) and select(env):
                    try:
                        await handle(env)
                    except BaseException:
                        kept.extend(items[i:])
                        raise
                    handled += 1
                else:
                    kept.append(item)
                if progress:  # how far through the queue, as the RabbitMQ bus reports it
                    progress(i + 1, len(items))
        finally:
            for item in kept:
                queue.put_nowait(item)
        return handled, len(kept)

    async def purge(self, address: str) -> int:
        return len(self._drain(address)[1])

    async def open_replies(self, on_reply: OnReply) -> str:
        address = f"reply.{new_id()}"
        self._repliers[address] = on_reply
        return address

    async def reply(self, address: str, envelope: Envelope,
                    returned: OnReturned | None = None) -> None:
        taker = self._repliers.get(address)
        if taker is None or not self._open:
            raise PublishRejected(f"nothing waits at {address!r}")
        # Through the wire form and the loop, as a broker would hand it over.
        asyncio.get_running_loop().call_soon(taker, Envelope.from_json(envelope.to_json()))

    async def close(self) -> None:
        self._repliers.clear()
        await self.stop_consuming()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._open = False
