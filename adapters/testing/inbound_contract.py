"""The inbound half of the adapter contract, as tests a plugin reuses by subclassing.

The test plays the runtime (a :class:`~esb.adapters.testing.RecordingInboundContext` over an
embedded bus) and, through the hooks, the outside peer::

    class TestMyInbound(InboundContract):
        spec = SPEC
        settings = {"directory": "inbox"}
        expected_type = "customer.updated"

        async def offer(self):            # the peer hands over one input
            (self.tmp_path / "inbox" / "one.dat").write_text(RECORD)

        async def acknowledged(self):     # does the peer consider it taken?
            return not (self.tmp_path / "inbox" / "one.dat").exists()

        async def retry(self):            # told to retry: a polled folder needs nothing
            pass

What the tests prove: one input becomes exactly one accepted envelope with the expected
``source`` and ``type``; the peer is acknowledged only after ``accept()`` returned, and when
``accept()`` raises :class:`~esb.bus.errors.BusUnavailable` the input is not consumed (the peer
is told to retry) and goes through once the bus is back; ``start``/``stop`` are idempotent,
``stop`` returns promptly and leaves no task running. A side whose spec declares
``inbound_mode="one-instance"`` is also run as two instances of a fleet under the runtime's own
lease wrapper: only one runs at a time, and after the holder stops the other takes over and
takes the input exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from esb.adapters.spec import INBOUND_MODES, Inbound
from esb.adapters.testing.context import KIT_DESTINATION, RecordingInboundContext
from esb.adapters.testing.serve import serve_inbound
from esb.adapters.testing.spec_contract import (
    SpecContract,
    describe_tasks,
    eventually,
    leftover_tasks,
)
from esb.bus.broker.embedded import EmbeddedBus
from esb.bus.envelope import Envelope
from esb.bus.runtime.local_leases import LocalLeases
from esb.bus.runtime.singleton import OneInstance


class InboundContract(SpecContract):
    """Contract tests for an inbound side. Subclass as ``Test...`` and fill in the hooks.

    While a test runs: ``self.context`` is the recording context, ``self.side`` the running
    side, ``self.base_url`` where its HTTP routes are served (``None`` without routes) and
    ``self.tmp_path`` the config folder.
    """

    direction: ClassVar[str] = "inbound"
    #: The ``type`` the envelope made from ``offer()``'s input must have.
    expected_type: ClassVar[str]
    #: Its ``source``; ``None`` means the endpoint name (``self.context.name``).
    expected_source: ClassVar[str | None] = None
    #: Seconds to wait for the side to react (a polling side needs a poll interval or two).
    wait: ClassVar[float] = 5.0
    #: Seconds to keep watching for a second envelope or a late acknowledgement.
    settle: ClassVar[float] = 0.3
    #: ``stop()`` must return within this many seconds.
    stop_timeout: ClassVar[float] = 5.0

    context: RecordingInboundContext
    side: Inbound
    base_url: str | None = None

    # -- hooks --------------------------------------------------------------------------------

    def inbound_settings(self) -> dict[str, object]:
        """Hook: the settings the side runs with. Default: ``settings``."""
        return self.base_settings()

    async def offer(self) -> None:
        """Hook: play the peer and hand the running side one input (one HTTP request, one
        file with one record, one message ...). It may wait for the peer's answer — the tests
        run it as a task, so it can be pending while ``accept()`` is held."""
        raise NotImplementedError("offer(): hand the running side one input")

    async def acknowledged(self) -> bool:
        """Hook: whether the peer now considers its input taken (a 2xx answer, the file moved
        out of the inbox, the message acked). Must be ``False`` while nothing was answered."""
        raise NotImplementedError("acknowledged(): did the peer get a positive answer?")

    async def retry(self) -> None:
        """Hook: what the peer does once told to retry. Default: :meth:`offer` again (an HTTP
        client resends); a polled source needs nothing and overrides this with ``pass``."""
        await self.offer()

    def check_envelope(self, envelope: Envelope) -> None:
        """Hook: further assertions on the envelope made from ``offer()``'s input (its data,
        content type, subject ...). Default: nothing."""

    # -- harness ------------------------------------------------------------------------------

    def _build(self, context: RecordingInboundContext) -> Inbound:
        settings = self._model().model_validate(self.inbound_settings())
        assert self.spec.inbound is not None
        side = self.spec.inbound(settings, context)
        assert isinstance(side, Inbound), \
            f"the inbound factory returned {type(side).__name__}: it needs routes, start, stop"
        return side

    @contextlib.asynccontextmanager
    async def _running(self, *, start: bool = True) -> AsyncIterator[Inbound]:
        bus = EmbeddedBus()
        await bus.start([KIT_DESTINATION])
        self.context = RecordingInboundContext(config_dir=self.tmp_path, bus=bus)
        self.side = self._build(self.context)
        try:
            async with serve_inbound(self.side) as url:
                self.base_url = url
                if start:
                    await self.side.start()
                try:
                    yield self.side
                finally:
                    self.context.release()
                    await asyncio.wait_for(self.side.stop(), self.stop_timeout)
        finally:
            await bus.close()

    async def _exactly_one(self) -> Envelope:
        await eventually(lambda: self.context.accepted, self.wait,
                         "no envelope was accepted for the input")
        await asyncio.sleep(self.settle)
        got = self.context.accepted
        assert len(got) == 1, f"one input gave {len(got)} accepted envelopes, expected 1"
        return got[0]

    async def _await_offer(self, task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(task, self.wait)
        except TimeoutError:
            pytest.fail(f"the peer got no answer within {self.wait:g}s", pytrace=False)

    # -- the tests ----------------------------------------------------------------------------

    def test_one_input_becomes_one_envelope(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with self._running():
                await self._await_offer(asyncio.create_task(self.offer()))
                env = await self._exactly_one()
                source = self.expected_source or self.context.name
                assert env.source == source, f"source is {env.source!r}, expected {source!r}"
                assert env.type == self.expected_type, \
                    f"type is {env.type!r}, expected {self.expected_type!r}"
                self.check_envelope(env)
                await eventually(self.acknowledged, self.wait,
                                 "the peer was never acknowledged after accept() returned")

        self.run_async(tmp_path, scenario)

    def test_acknowledges_only_after_accept_returned(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with self._running():
                self.context.hold()
                offer = asyncio.create_task(self.offer())
                await eventually(lambda: self.context.attempts >= 1, self.wait,
                                 "the side never called accept() for the input")
                await asyncio.sleep(self.settle)
                assert not await self.acknowledged(), \
                    ("the peer was acknowledged while accept() had not returned: if the bus "
                     "fails now, the input is lost")
                self.context.release()
                await self._await_offer(offer)
                await eventually(self.acknowledged, self.wait,
                                 "the peer was never acknowledged after accept() returned")
                await self._exactly_one()

        self.run_async(tmp_path, scenario)

    def test_bus_unavailable_leaves_the_input_unconsumed(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with self._running():
                self.context.down = True
                offer = asyncio.create_task(self.offer())
                await eventually(lambda: self.context.attempts >= 1, self.wait,
                                 "the side never called accept() for the input")
                await self._await_offer(offer)
                await asyncio.sleep(self.settle)
                assert not await self.acknowledged(), \
                    ("accept() raised BusUnavailable but the peer was told its input was "
                     "taken: it is lost (answer 'retry later' and keep the input)")
                assert not self.context.accepted
                self.context.down = False
                await self.retry()
                await eventually(self.acknowledged, self.wait,
                                 "after the bus came back the input was never taken")
                await self._exactly_one()

        self.run_async(tmp_path, scenario)

    def test_start_and_stop_are_idempotent(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with self._running(start=False) as side:
                await side.stop()  # stop before start: a daemon whose startup failed
                await side.start()
                await side.start()
                await self._await_offer(asyncio.create_task(self.offer()))
                await self._exactly_one()
                await side.stop()

        self.run_async(tmp_path, scenario)

    def test_stop_is_prompt_and_leaves_no_task(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            async with self._running(start=False) as side:
                before = set(asyncio.all_tasks())
                await side.start()
                await self._await_offer(asyncio.create_task(self.offer()))
                await self._exactly_one()
                try:
                    await asyncio.wait_for(side.stop(), self.stop_timeout)
                except TimeoutError:
                    pytest.fail(f"stop() took longer than {self.stop_timeout:g}s",
                                pytrace=False)
                left = await leftover_tasks(before)
                assert not left, f"tasks still running after stop(): {describe_tasks(left)}"

        self.run_async(tmp_path, scenario)

    def test_inbound_mode_is_declared_and_honoured(self, tmp_path: Path) -> None:
        mode = self.spec.inbound_mode
        assert mode in INBOUND_MODES, \
            f"inbound_mode {mode!r}: one of {', '.join(INBOUND_MODES)}"
        if mode != "one-instance":
            return

        async def scenario() -> None:
            bus = EmbeddedBus()
            await bus.start([KIT_DESTINATION])
            fleet_dir = self.tmp_path / ".esb"
            # Two instances of one deployment: contexts sharing the source's state, each with
            # its own hold on the lease (as two processes would have).
            first = RecordingInboundContext(config_dir=self.tmp_path, bus=bus, instance="kit-1")
            second = RecordingInboundContext(config_dir=self.tmp_path, bus=bus,
                                             instance="kit-2", state=first.state)
            self.context = first
            sides = [OneInstance(self._build(ctx), LocalLeases(fleet_dir, 0.05).lease(ctx.name),
                                 ctx.name, retry=0.05) for ctx in (first, second)]
            try:
                for side in sides:
                    await side.start()
                await eventually(lambda: any(s.running for s in sides), self.wait,
                                 "neither instance took the lease")
                await asyncio.sleep(self.settle)
                assert sum(s.running for s in sides) == 1, "both instances run the source"
                holder = next(s for s in sides if s.running)
                standby = next(s for s in sides if s is not holder)
                await asyncio.wait_for(holder.stop(), self.stop_timeout)
                await eventually(lambda: standby.running, self.wait,
                                 "the other instance never took over after the holder stopped")
                self.context = second if standby is sides[1] else first
                async with serve_inbound(standby) as url:  # HTTP routes: on every instance
                    self.base_url = url
                    await self._await_offer(asyncio.create_task(self.offer()))
                await eventually(lambda: first.accepted or second.accepted, self.wait,
                                 "the instance that took over accepted nothing")
                await asyncio.sleep(self.settle)
                got = first.accepted + second.accepted
                assert len(got) == 1, f"one input gave {len(got)} envelopes across the fleet"
                assert self.context.accepted, "the stopped instance took the input"
                await eventually(self.acknowledged, self.wait,
                                 "the peer was never acknowledged after accept() returned")
            finally:
                for side in sides:
                    await asyncio.wait_for(side.stop(), self.stop_timeout)
                await bus.close()

        self.run_async(tmp_path, scenario)
