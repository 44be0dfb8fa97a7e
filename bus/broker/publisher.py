"""Publisher confirms, pipelined: many publishes in flight on one channel, each awaited alone.

Every publish is ``mandatory``; a ``basic.return`` for it (matched by message id and routing
key, since returns carry no delivery tag) turns its confirm into a failure. A lost channel
fails everything still pending with :class:`~esb.bus.errors.BusUnavailable`.

A publish with a ``timeout`` fails with :class:`~esb.bus.broker.connection.NoAnswer` when its
confirm has not come by then, through :class:`~esb.bus.deadline.Deadlines` (one sweeper for
all: ``asyncio.wait_for`` per publish cost a timer, a waiter future and a callback on every
message, ~4 µs measured). An overdue confirm stays pending: a late one is still matched (and
ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
from pika.channel import Channel

from esb.bus.broker.connection import AmqpLink, NoAnswer
from esb.bus.deadline import Deadlines
from esb.bus.errors import BusUnavailable, PublishRejected


class PublishReturned(PublishRejected):
    """The broker returned a ``mandatory`` publish: no queue took it (``reply`` says why)."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(f"no queue took the message ({reply}): is the topology declared?")


#: How often the confirms waited for are checked for overdue ones: a confirm timeout fires up
#: to this much late.
SWEEP = 0.25


@dataclass
class _Pending:
    future: asyncio.Future[None]
    key: tuple[str | None, str]
    returned: str | None = None


class ConfirmedPublisher:
    def __init__(self, window: int = 1000) -> None:
        self._window = asyncio.Semaphore(window)
        self._channel: Channel | None = None
        self._tag = 0
        self._pending: dict[int, _Pending] = {}
        #: Publishes waiting for their confirm by (message id, routing key), oldest first: a
        #: returned message names only those (a retry may repeat both while one waits).
        self._by_key: dict[tuple[str | None, str], list[int]] = {}
        self._deadlines = Deadlines(SWEEP)
        #: The loop :meth:`open` ran on (its futures' loop): asked once, as on Python 3.11
        #: each get_running_loop() is a system call.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ready(self) -> bool:
        return self._channel is not None and self._channel.is_open

    @property
    def channel(self) -> Channel | None:
        """The confirm-mode channel (None before :meth:`open` and once it closed): an RPC
        client consumes its direct replies on the channel it publishes on."""
        return self._channel

    async def open(self, link: AmqpLink,
                   on_close: Callable[[Channel, BaseException], None] | None = None, *,
                   recover: bool = False) -> None:
        """Open a confirm-mode channel on ``link`` (call from its ``on_connected``); ``on_close``
        is told too when that channel closes, after everything pending on it has failed;
        ``recover`` as for :meth:`AmqpLink.channel`."""
        channel = await link.channel(on_close=self._on_channel_closed, recover=recover)
        if on_close is not None:
            channel.add_on_close_callback(on_close)
        # The channel is bound in: a late confirm of a replaced channel is not this one's.
        await link.call(channel.confirm_delivery,
                        ack_nack_callback=functools.partial(self._on_confirm, channel))
        channel.add_on_return_callback(self._on_return)
        # Confirms are per channel: whatever still waits on an earlier one never hears, and
        # the new channel's tags start again at 1 (the confirm walk relies on their order).
        self.fail_all(BusUnavailable("bus channel replaced before its confirm came"))
        self._tag = 0
        self._loop = asyncio.get_running_loop()
        self._channel = channel

    def fail_all(self, exc: Exception) -> None:
        pending, self._pending, self._by_key = self._pending, {}, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if channel is self._channel:
            self._channel = None
            self.fail_all(BusUnavailable(f"bus channel closed: {reason}"))

    def _on_return(self, channel: Channel, method: Any, props: Any, body: bytes) -> None:
        if channel is not self._channel:
            return
        # The broker returns a message before it confirms it: the oldest waiting publish of
        # this id and key that is not marked yet is the one.
        for tag in self._by_key.get((props.message_id, method.routing_key), ()):
            p = self._pending.get(tag)
            if p is not None and p.returned is None:
                p.returned = f"{method.reply_code} {method.reply_text}"
                return

    def _forget(self, key: tuple[str | None, str], tag: int) -> None:
        tags = self._by_key.get(key)
        if tags is not None:
            with contextlib.suppress(ValueError):
                tags.remove(tag)
            if not tags:
                del self._by_key[key]

    def _on_confirm(self, channel: Channel, frame: Any) -> None:
        if channel is not self._channel:
            return
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = _up_to(self._pending, method.delivery_tag) if method.multiple \
            else [method.delivery_tag]
        for tag in tags:
            p = self._pending.pop(tag, None)
            if p is None:
                continue
            self._forget(p.key, tag)
            if p.future.done():
                continue
            if not acked:
                # Which queue refused it: an operator's first question when a broker node
                # is sick (a quorum queue or stream with no leader nacks every publish).
                p.future.set_exception(
                    PublishRejected(f"the broker refused the message for {p.key[1]} (nack)"))
            elif p.returned:
                p.future.set_exception(PublishReturned(p.returned))
            else:
                p.future.set_result(None)

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: pika.BasicProperties, *, mandatory: bool = True,
                      timeout: float | None = None) -> None:
        """Publish and wait for the broker's confirm (raises BusUnavailable/PublishRejected);
        with ``timeout``, a confirm that does not come within it raises :class:`NoAnswer`."""
        async with self._window:
            channel, loop = self._channel, self._loop
            if channel is None or not channel.is_open or loop is None:
                raise BusUnavailable("the bus is not connected")
            self._tag += 1
            fut: asyncio.Future[None] = loop.create_future()
            key = (properties.message_id, routing_key)
            self._pending[self._tag] = _Pending(fut, key)
            if mandatory:
                self._by_key.setdefault(key, []).append(self._tag)
            try:
                channel.basic_publish(exchange, routing_key, body, properties,
                                      mandatory=mandatory)
            except Exception as exc:
                self._pending.pop(self._tag, None)
                self._forget(key, self._tag)
                raise BusUnavailable(f"publish failed: {exc}") from exc
            if timeout is None:
                await fut
                return
            try:
                await self._deadlines.run(fut, timeout)
            except TimeoutError:
                raise NoAnswer("the broker did not confirm the publish") from None


def _up_to(pending: dict[int, _Pending], last: int) -> list[int]:
    """The tags in ``pending`` up to ``last``: the keys are in publishing order (tags only
    grow on a channel), so the walk stops at the first one past it instead of reading all."""
    out = []
    for tag in pending:
        if tag > last:
            break
        out.append(tag)
    return out
