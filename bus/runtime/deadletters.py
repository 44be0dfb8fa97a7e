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
from esb.bus.envelope import Envelope, Hop, utcnow
from esb.bus.errors import DropEnvelope, EsbError, TransformError, TransientTransformError
from esb.bus.runtime.ingress import LEG_TRANSFORM, Ingress, failed_in_leg, leg_chain
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
            return (env.type != "esb.malformed"
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
        if dest is None:
            return await self._reroute(env)
        if dest not in self.destinations:
            raise ReplayError(f"{env.id}: destination {dest!r} is no longer configured")
        fresh = env.model_copy(update={
            "esbattempts": [], "esberror": None,
            "esbhops": [*env.esbhops, Hop(at=utcnow(), step="replayed",
                                          instance=self.instance,
                                          detail={"destination": dest})]})
        if failed_in_leg(env):
            # The destination's own steps failed: run them again (the running route set's,
            # which may carry the fix), then deliver; failing again, it is dead-lettered again.
            router = self.ingress.routes.current
            try:
                chain = leg_chain(router, env.esbroute or "", dest)
            except KeyError as exc:
                raise ReplayError(f"{env.id}: {exc.args[0]}") from None
            if chain:
                try:
                    fresh = chain(fresh)
                except DropEnvelope:
                    self.trace.record(env.id, "replayed", destination=dest, dropped=True)
                    return
                except TransientTransformError as exc:
                    raise ReplayError(f"{env.id}: {exc}; replay it again later") from None
                except TransformError as exc:
                    await self.bus.publish(DEAD_LETTER, fresh.model_copy(update={
                        "esberror": str(exc)}).with_hop("dead-lettered", self.instance,
                                                        reason=str(exc), stage=LEG_TRANSFORM))
                    self.trace.record(env.id, "transform-failed", destination=dest,
                                      error=str(exc))
                    return
                fresh = fresh.model_copy(update={"esbrouteversion": router.version})
        part = self.partitioners.get(dest)
        await self.bus.publish(part.address(fresh) if part else destination_address(dest), fresh)
        self.trace.record(env.id, "replayed", destination=dest)

    async def _reroute(self, env: Envelope) -> None:
        fresh = env.model_copy(update={"esberror": None, "esbattempts": [],
                                       "esbroute": None, "esbdestination": None})
        self.trace.record(env.id, "replayed", destination=None)
        await self.ingress.accept(fresh, env.esbendpoint or "replay")

