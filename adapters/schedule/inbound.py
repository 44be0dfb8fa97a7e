"""schedule inbound: fires an envelope at each slot of a cron expression or interval.

The adapter declares ``one-instance``: only the lease holder fires, and the last slot fired is
kept in the source's state (on the broker), so the next holder — after a crash, on another
host — continues from it instead of firing that slot again. Each envelope's id and idempotency
key are ``<source>@<slot>``, so even a slot fired twice (a holder cut off from the broker
firing as the lease moves) is published once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from cronsim import CronSim

from esb.adapters.schedule.settings import ScheduleSettings
from esb.adapters.spec import HttpRoute, InboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import BusError, ConfigError
from esb.bus.tasks import cancel_and_wait

log = structlog.get_logger("esb.schedule")

#: How soon a fire the bus did not take is tried again.
RETRY = 1.0


class ScheduleInbound:
    routes: list[HttpRoute] = []

    def __init__(self, settings: ScheduleSettings, ctx: InboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.zone = ZoneInfo(settings.timezone)
        try:
            render(settings.payload, self._fields(datetime.now(self.zone)))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError([f"sources.{ctx.name}.payload: unknown placeholder {exc} "
                               "(use {scheduled}, {date}, {time}, {source})"]) from None
        self._task: asyncio.Task[None] | None = None
        #: The last slot fired (as this instance knows it).
        self.last: datetime | None = None

    def next_after(self, when: datetime) -> datetime:
        """The first slot strictly after ``when``."""
        if self.settings.every is not None:
            return when + timedelta(seconds=self.settings.every)
        assert self.settings.cron is not None
        return next(CronSim(self.settings.cron, when.astimezone(self.zone)))

    def status(self) -> dict[str, Any]:
        now = datetime.now(self.zone)
        base = self.last if self.last is not None and self.settings.every else now
        upcoming = self.next_after(base)
        return {"next_fire": max(upcoming, now).isoformat(timespec="seconds")}

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.create_task(self._run(), name=f"esb-schedule-{self.ctx.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        slot = await self._first_slot()
        while True:
            delay = (slot - datetime.now(UTC)).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            while not await self._fire(slot):
                await asyncio.sleep(RETRY)
            slot = self.next_after(slot)

    async def _first_slot(self) -> datetime:
        """Where this holder starts: after the last slot fired (from the state), catching up
        one missed slot when ``catch_up: one``."""
        while True:
            try:
                state = await self.ctx.state.load() or {}
                break
            except BusError as exc:
                log.warning("schedule state not readable yet", source=self.ctx.name,
                            error=str(exc))
                await asyncio.sleep(RETRY)
        now = datetime.now(self.zone)
        last = state.get("last")
        if last is None:
            return self.next_after(now)
        self.last = datetime.fromisoformat(last).astimezone(self.zone)
        slot = self.next_after(self.last)
        if slot > now:
            return slot
        missed = slot
        while (following := self.next_after(missed)) <= now:
            missed = following
        return missed if self.settings.catch_up == "one" else following

    async def _fire(self, slot: datetime) -> bool:
        scheduled = slot.astimezone(self.zone)
        key = f"{self.ctx.name}@{scheduled.isoformat()}"
        envelope = Envelope(id=key, idempotencykey=key, source=self.ctx.name,
                            type=self.settings.type, subject=scheduled.isoformat(),
                            datacontenttype="application/json",
                            data=render(self.settings.payload, self._fields(scheduled)))
        try:
            await self.ctx.accept(envelope)
            await self.ctx.state.save({"last": scheduled.isoformat()})
        except BusError as exc:
            log.warning("schedule fire not taken; trying again", source=self.ctx.name,
                        slot=scheduled.isoformat(), error=str(exc))
            return False
        self.last = scheduled
        return True

    def _fields(self, scheduled: datetime) -> dict[str, str]:
        return {"scheduled": scheduled.isoformat(), "date": scheduled.date().isoformat(),
                "time": scheduled.time().isoformat(timespec="seconds"),
                "source": self.ctx.name}


def render(value: Any, fields: dict[str, str]) -> Any:
    """``value`` with ``{name}`` placeholders in its strings filled from ``fields``."""
    if isinstance(value, str):
        return value.format_map(fields)
    if isinstance(value, list):
        return [render(v, fields) for v in value]
    if isinstance(value, dict):
        return {k: render(v, fields) for k, v in value.items()}
    return value
