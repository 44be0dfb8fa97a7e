"""The dead-letter and unroutable queues as an operator sees them: list, show, replay, purge.

Replay re-delivers a dead letter to the destination it failed at, with a fresh attempt
history (a ``replayed`` hop records that it happened); an envelope that failed before it had a
destination (a route-level transform), and every unroutable envelope, goes through the route
set in force again, so a fix deployed since then applies. One whose destination's own steps
failed runs those steps again (the running set's) on its way to that destination only.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from esb.bus.broker.base import DEAD_LETTER, UNROUTABLE, Bus, Progress, destination_address
from esb.bus.deadletter import LEG_TRANSFORM, MALFORMED_TYPE, ROUTE_TRANSFORM, stage_of
from esb.bus.envelope import Envelope, Hop, utcnow
from esb.bus.errors import EsbError
from esb.bus.routing.dispatch import plan_leg
from esb.bus.runtime.ingress import Ingress
from esb.bus.runtime.ordering import Partitioner
from esb.bus.runtime.trace import TraceRecorder

QUEUES = {"dlq": DEAD_LETTER, "unroutable": UNROUTABLE}


class ReplayError(EsbError):
    """A replay request that cannot be carried out."""


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    left: int


def summary(env: Envelope) -> dict[str, Any]:
    """One line of ``esb dlq list``."""
    last = env.esbhops[-1].at if env.esbhops else env.time
    return {"id": env.id, "type": env.type, "source": env.source,
            "endpoint": env.esbendpoint, "destination": env.esbdestination,
            "route": env.esbroute, "key": env.key, "attempts": len(env.esbattempts),
            "error": env.esberror, "at": last.isoformat()}


class DeadLetters:
    def __init__(self, bus: Bus, ingress: Ingress, destinations: Collection[str],
                 partitioners: dict[str, Partitioner], instance: str,
                 trace: TraceRecorder) -> None:
        self.bus = bus
        self.trace = trace
        self.ingress = ingress
        self.destinations = set(destinations)
        self.partitioners = partitioners
        self.instance = instance

    @staticmethod
    def address(which: str) -> str:
        try:
            return QUEUES[which]
        except KeyError:
            raise ReplayError(f"unknown queue {which!r} (dlq or unroutable)") from None

    async def list(self, which: str, limit: int = 100) -> list[Envelope]:
        return await self.bus.browse(self.address(which), limit)

    async def show(self, which: str, envelope_id: str, scan: int = 100_000) -> Envelope | None:
        for env in await self.bus.browse(self.address(which), scan):
            if env.id == envelope_id:
                return env
        return None

    async def purge(self, which: str) -> int:
        return await self.bus.purge(self.address(which))

    async def replay(self, which: str, ids: Collection[str] | None = None,
                     destination: str | None = None,
                     progress: Progress | None = None) -> ReplayResult:
        """Replay the envelopes named by ``ids`` (all when None), optionally only those that
        failed at ``destination``."""
        if destination is not None and destination not in self.destinations:
            raise ReplayError(f"unknown destination {destination!r}")
        wanted = set(ids) if ids is not None else None

        def select(env: Envelope) -> bool:
            return (env.type != MALFORMED_TYPE
                    and (wanted is None or env.id in wanted)
                    and (destination is None or env.esbdestination == destination))

        handle = self._redeliver if which == "dlq" else self._reroute
        # No limit by the number of ids: an envelope that failed at two destinations of a
        # fan-out has a dead letter per destination, under one id, and both are replayed.
        handled, left = await self.bus.take(self.address(which), select, handle,
                                            progress=progress)
        return ReplayResult(handled, left)

    async def _redeliver(self, env: Envelope) -> None:
        dest = env.esbdestination
        stage = stage_of(env)
        if dest is None or stage == ROUTE_TRANSFORM:
            return await self._reroute(env)
        if dest not in self.destinations:
            raise ReplayError(f"{env.id}: destination {dest!r} is no longer configured")
        fresh = env.model_copy(update={
            "esbattempts": [], "esberror": None,
            "esbhops": [*env.esbhops, Hop(at=utcnow(), step="replayed",
                                          instance=self.instance,
                                          detail={"destination": dest})]})
        if stage == LEG_TRANSFORM:
            # The destination's own steps failed: re-plan them (the running route set's, which
            # may carry the fix); failing again, it is dead-lettered again.
            try:
                planned = plan_leg(self.ingress.routes.current, fresh, env.esbroute or "",
                                   dest, instance=self.instance)
            except KeyError as exc:
                raise ReplayError(f"{env.id}: {exc.args[0]}") from None
            if planned.deferred is not None:
                raise ReplayError(f"{env.id}: {planned.deferred.error}; replay it again later")
            if not planned.copies and not planned.dead_letters:
                self.trace.record(env.id, "replayed", destination=dest, dropped=True)
                return
            await self.ingress.publish(planned)
            if planned.copies:
                self.trace.record(env.id, "replayed", destination=dest)
            return
        part = self.partitioners.get(dest)
        await self.bus.publish(part.address(fresh) if part else destination_address(dest), fresh)
        self.trace.record(env.id, "replayed", destination=dest)

    async def _reroute(self, env: Envelope) -> None:
        fresh = env.model_copy(update={"esberror": None, "esbattempts": [],
                                       "esbroute": None, "esbdestination": None})
        self.trace.record(env.id, "replayed", destination=None)
        await self.ingress.accept(fresh, env.esbendpoint or "replay")

