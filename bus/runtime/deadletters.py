"""The dead-letter and unroutable queues as an operator sees them: list, show, replay, purge.

Replay re-delivers a dead letter to the destination it failed at, with a fresh attempt
history (a ``replayed`` hop records that it happened); an envelope that failed before it had a
destination (a route-level transform), and every unroutable envelope, goes through the route
set in force again, so a fix deployed since then applies. One whose destination's own steps
failed runs those steps again (the running set's) on its way to that destination only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from esb.bus.broker.base import DEAD_LETTER, UNROUTABLE, Bus, Progress, destination_address
from esb.bus.deadletter import LEG_TRANSFORM, MALFORMED_TYPE, ROUTE_TRANSFORM, stage_of
from esb.bus.envelope import Envelope, Hop, utcnow
from esb.bus.errors import EsbError
from esb.bus.routing.dispatch import plan_leg_async
from esb.bus.routing.plan import Plan
from esb.bus.runtime.ingress import Ingress
from esb.bus.runtime.ordering import Partitioner
from esb.bus.runtime.trace import TraceRecorder, one_envelope

QUEUES = {"dlq": DEAD_LETTER, "unroutable": UNROUTABLE}


class ReplayError(EsbError):
    """A replay request that cannot be carried out."""


#: What became of one replayed envelope. QUEUED: on its destination's queue again (or
#: several, when routed again); DELIVERED: the destination took it; DEAD: it failed again and
#: is back in the dead-letter queue; UNROUTABLE: no route matches it; DROPPED: a step filtered
#: it out.
QUEUED, DELIVERED, DEAD, UNROUTABLE_AGAIN, DROPPED = (
    "queued", "delivered", "dead-lettered", "unroutable", "dropped")
#: Outcomes that mean the replay did not get the envelope anywhere.
FAILED_AGAIN = (DEAD, UNROUTABLE_AGAIN)
#: Queued envelopes whose delivery a replay follows (through the trace) before answering.
FOLLOW_AT_MOST = 100


@dataclass
class ReplayOutcome:
    id: str
    outcome: str
    destinations: list[str] = field(default_factory=list)
    error: str | None = None
    status: object = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome, "destinations": self.destinations,
                **({"error": self.error} if self.error else {}),
                **({"status": self.status} if self.status is not None else {})}


@dataclass(frozen=True)
class ReplayResult:
    #: Envelopes that went somewhere (queued or delivered), not back where they were.
    replayed: int
    left: int
    outcomes: list[ReplayOutcome] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(o.outcome in FAILED_AGAIN for o in self.outcomes)


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

    async def show(self, which: str, ref: str, scan: int = 100_000) -> Envelope | None:
        """The envelope ``ref`` names: its id, a unique prefix of its id, or its idempotency
        key. AmbiguousRef when it names several."""
        envs = await self.bus.browse(self.address(which), scan)
        for env in envs:
            if env.id == ref:
                return env
        named = {env.id: env for env in envs
                 if env.id.startswith(ref) or env.idempotencykey == ref}
        eid = one_envelope(ref, set(named))
        return named[eid] if eid else None

    async def purge(self, which: str) -> int:
        return await self.bus.purge(self.address(which))

    async def replay(self, which: str, ids: Collection[str] | None = None,
                     destination: str | None = None,
                     progress: Progress | None = None, follow: float = 0.0) -> ReplayResult:
        """Replay the envelopes named by ``ids`` (all when None), optionally only those that
        failed at ``destination``; then follow the queued ones for up to ``follow`` seconds to
        report whether they were delivered or failed again."""
        if destination is not None and destination not in self.destinations:
            raise ReplayError(f"unknown destination {destination!r}")
        wanted = set(ids) if ids is not None else None

        def select(env: Envelope) -> bool:
            return (env.type != MALFORMED_TYPE
                    and (wanted is None or env.id in wanted)
                    and (destination is None or env.esbdestination == destination))

        handler = self._redeliver if which == "dlq" else self._reroute
        outcomes: list[ReplayOutcome] = []

        async def handle(env: Envelope) -> None:
            outcomes.append(await handler(env))

        started = utcnow()
        # No limit by the number of ids: an envelope that failed at two destinations of a
        # fan-out has a dead letter per destination, under one id, and both are replayed.
        _, left = await self.bus.take(self.address(which), select, handle, progress=progress)
        await self._follow(outcomes, started, follow)
        replayed = sum(o.outcome not in FAILED_AGAIN for o in outcomes)
        return ReplayResult(replayed, left, outcomes)

    async def _follow(self, outcomes: list[ReplayOutcome], since: Any, seconds: float) -> None:
        """Wait up to ``seconds`` for queued envelopes to be delivered or dead-lettered again
        (the trace tells, whichever instance delivers), and update their outcomes."""
        pending = [o for o in outcomes if o.outcome == QUEUED][:FOLLOW_AT_MOST]
        deadline = asyncio.get_running_loop().time() + seconds
        while pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.25)
            window = utcnow() - since + timedelta(seconds=5)
            try:  # all of them in one read of the trace (one per envelope was that many)
                traced = await self.trace.query_many([o.id for o in pending], window)
            except Exception:  # the trace is best effort: the outcomes stay "queued"
                return
            for o in list(pending):
                events = traced.get(o.id, [])
                done = {e.detail.get("destination"): e for e in events if e.at >= since
                        and e.step in ("delivered", "dead-lettered")}
                if not o.destinations or any(d not in done for d in o.destinations):
                    continue
                failed = [done[d] for d in o.destinations if done[d].step == "dead-lettered"]
                if failed:
                    o.outcome, o.error = DEAD, str(failed[0].detail.get("error") or "")
                else:
                    o.outcome = DELIVERED
                    o.status = done[o.destinations[0]].detail.get("status")
                pending.remove(o)

    async def _redeliver(self, env: Envelope) -> ReplayOutcome:
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
                planned = await plan_leg_async(self.ingress.routes.current, fresh,
                                               env.esbroute or "", dest, instance=self.instance)
            except KeyError as exc:
                raise ReplayError(f"{env.id}: {exc.args[0]}") from None
            if planned.deferred is not None:
                raise ReplayError(f"{env.id}: {planned.deferred.error}; replay it again later")
            await self.ingress.publish(planned)
            return self._replayed(env.id, planned, dest)
        part = self.partitioners.get(dest)
        await self.bus.publish(part.address(fresh) if part else destination_address(dest), fresh)
        self.trace.record(env.id, "replayed", destination=dest, outcome=QUEUED)
        return ReplayOutcome(env.id, QUEUED, [dest])

    async def _reroute(self, env: Envelope) -> ReplayOutcome:
        fresh = env.model_copy(update={"esberror": None, "esbattempts": [],
                                       "esbroute": None, "esbdestination": None})
        # (asks again for any enrichment its routes need)
        planned = await self.ingress.plan(fresh, env.esbendpoint or "replay")
        await self.ingress.publish(planned)  # deferred: raises, and the envelope stays
        return self._replayed(env.id, planned, None)

    def _replayed(self, eid: str, planned: Plan, destination: str | None) -> ReplayOutcome:
        """What re-planning ``eid`` led to, recorded as its ``replayed`` trace step."""
        if planned.copies:  # (a leg that failed again is a new dead letter: said too)
            out = ReplayOutcome(eid, QUEUED, planned.destinations,
                                planned.dead_letters[0].error if planned.dead_letters else None)
        elif planned.dead_letters:
            out = ReplayOutcome(eid, DEAD, [], planned.dead_letters[0].error)
        elif planned.unroutable:
            out = ReplayOutcome(eid, UNROUTABLE_AGAIN, [],
                                f"no route of version {planned.version} matches it")
        else:
            out = ReplayOutcome(eid, DROPPED)
        # (stamped just before the plan's own steps, so the trace reads in order)
        self.trace.record(eid, "replayed", at=planned.at.timestamp() - 1e-6,
                          destination=destination, outcome=out.outcome, error=out.error)
        return out

