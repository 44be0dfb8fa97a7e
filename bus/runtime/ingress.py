"""Ingress: an accepted envelope is routed by one route-set version, transformed, and
published to every destination it goes to — and only then is the sender told it was accepted.

Routing and transforming happen here, once, so an envelope is handled wholly by the route set
that was current when it arrived (recorded in ``esbrouteversion``), and each destination queue
holds envelopes already in that destination's format. Both the route's own transform steps and
each destination's steps run here; each step that succeeds is a ``transformed`` trace event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import structlog

from esb.adapters.spec import Accepted
from esb.bus.broker.base import DEAD_LETTER, UNROUTABLE, Bus, destination_address
from esb.bus.envelope import Envelope, Hop, utcnow
from esb.bus.errors import (
    BusUnavailable,
    DropEnvelope,
    TransformDeferred,
    TransformError,
    TransientTransformError,
)
from esb.bus.routing.router import Router
from esb.bus.runtime.calls import PendingCalls
from esb.bus.runtime.idempotency import SharedIdempotency
from esb.bus.runtime.logs import bind_message, unbind_message
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.ordering import Partitioner
from esb.bus.runtime.trace import MemoryTrace, TraceRecorder
from esb.transformers.chain import Chain

log = structlog.get_logger("esb.ingress")


@dataclass
class RouterHolder:
    """The route set in force. Swapped whole (one attribute assignment), never edited."""

    current: Router


class Ingress:
    def __init__(self, bus: Bus, routes: RouterHolder, metrics: Metrics, instance: str,
                 partitioners: Mapping[str, Partitioner] | None = None,
                 trace: TraceRecorder | None = None) -> None:
        self.bus = bus
        self.trace: TraceRecorder = trace if trace is not None else MemoryTrace(instance)
        self.routes = routes
        self.metrics = metrics
        self.instance = instance
        self.partitioners = dict(partitioners or {})
        self._children: dict[tuple[object, ...], Any] = {}
        #: Set by the daemon once the route store's current version is installed: until
        #: then an envelope would be routed by the local files, not the deployed set.
        self.open = True

    def _counter(self, metric: Any, *labels: str) -> Any:
        """A labelled child metric, looked up once (labels() locks and hashes every time)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    async def accept(self, envelope: Envelope, endpoint: str,
                     calls: PendingCalls | None = None) -> Accepted:
        """Route, transform and publish ``envelope``; return once every copy is confirmed.

        ``calls``: the caller can wait for an answer. The first request/reply route that fires
        then registers it there (keyed by ``envelope.id``) and its copy carries the reply
        address; without ``calls`` such a route delivers one-way, like any other."""
        if not self.open:
            raise BusUnavailable("starting: the deployed route set is not loaded yet")
        router = self.routes.current  # one snapshot for the whole envelope
        now = utcnow()
        at = now.timestamp()  # trace time of every step here, recorded after the confirm
        version = router.version
        accepted = Hop(at=now, step="accepted", instance=self.instance,
                       detail={"endpoint": endpoint})
        # The stamped envelope is what routes match and transforms see; when the route set
        # only looks at the endpoint and the firing routes transform nothing (pass-through,
        # fan-out), each copy is stamped once, straight from the envelope received.
        env: Envelope | None = None

        def stamped() -> Envelope:
            nonlocal env
            if env is None:
                env = envelope.model_copy(update={
                    "esbendpoint": endpoint, "esbrouteversion": version,
                    "esbhops": [*envelope.esbhops, accepted]})
            return env

        fired = router.fired_for(endpoint)
        if fired is None:
            fired = router.match(stamped())
        publishes: list[tuple[str, Envelope]] = []
        replying = False  # a request/reply route took the caller (the first one only)
        #: Trace events, recorded once the publishes are confirmed (never for a refused one).
        events: list[TraceNote] = []
        if not fired:
            events.append(("unroutable", {"version": version}))
            publishes.append((UNROUTABLE, stamped().model_copy(update={
                "esberror": f"no route of version {version} matched"}).with_hop(
                "unroutable", self.instance)))
            self.metrics.unroutable.labels(endpoint).inc()
        for route in fired:
            name = route.name
            routed: Envelope | None = None  # the route's own steps applied, once per route
            if route.chain:
                try:
                    routed = _transform(route.chain, stamped(), events, {"route": name})
                except DropEnvelope:
                    continue
                except TransformError as exc:
                    publishes.append((DEAD_LETTER, _dead(stamped(), name, None, exc,
                                                         self.instance)))
                    events.append(("transform-failed", {"route": name, "error": str(exc)}))
                    if route.reply is not None and calls is not None and not replying:
                        replying = True
                        calls.refuse(envelope, name, route.legs[0].destination, route.reply,
                                     exc)
                    continue
                except TransientTransformError as exc:
                    raise _deferred(exc, name, None) from exc
            for leg in route.legs:
                dest = leg.destination
                routed_hop = Hop(at=now, step="routed", instance=self.instance,
                                 detail={"route": name, "destination": dest,
                                         "version": version})
                if routed is None and not leg.chain:  # nothing transforms it: one copy
                    out = envelope.model_copy(update={
                        "esbendpoint": endpoint, "esbrouteversion": version,
                        "esbroute": name, "esbdestination": dest,
                        "esbhops": [*envelope.esbhops, accepted, routed_hop]})
                else:
                    if routed is None:
                        routed = stamped()
                    try:
                        out = _transform(leg.chain, routed, events,
                                         {"route": name, "destination": dest}) \
                            if leg.chain else routed
                    except DropEnvelope:
                        continue
                    except TransformError as exc:
                        publishes.append((DEAD_LETTER, _dead(routed, name, dest, exc,
                                                             self.instance, leg=True)))
                        events.append(("transform-failed", {"route": name, "destination": dest,
                                                            "error": str(exc)}))
                        if route.reply is not None and calls is not None and not replying:
                            replying = True
                            calls.refuse(envelope, name, dest, route.reply, exc)
                        continue
                    except TransientTransformError as exc:
                        raise _deferred(exc, name, dest) from exc
                    out = out.model_copy(update={
                        "esbroute": name, "esbdestination": dest,
                        "esbhops": [*out.esbhops, routed_hop]})
                if route.reply is not None and calls is not None and not replying:
                    replying = True
                    out = calls.expect(out.model_copy(update={"id": envelope.id}), name, dest,
                                       route.reply, now.timestamp() + route.reply.timeout)
                part = self.partitioners.get(dest)
                address = part.address(out) if part else destination_address(dest)
                publishes.append((address, out))
                events.append(("routed", {"route": name, "version": version,
                                          "destination": dest}))
                self._counter(self.metrics.routed, name, dest).inc()
        try:
            if len(publishes) == 1:
                await self.bus.publish(*publishes[0])
            else:
                await asyncio.gather(*(self.bus.publish(a, e) for a, e in publishes))
        except BaseException:
            if calls is not None:
                calls.forget(envelope.id)
            raise
        self._counter(self.metrics.received, endpoint).inc()
        record = self.trace.record
        eid = envelope.id
        record(eid, "accepted", at=at, endpoint=endpoint, version=version)
        for step, detail in events:
            record(eid, step, at=at, **detail)
        return Accepted(eid, tuple(a for a, _ in publishes))


def leg_chain(router: Any, route: str, destination: str) -> Chain | None:
    """The steps ``route`` applies for ``destination`` in ``router``'s route set; raises
    KeyError when that route no longer sends to that destination."""
    for r in router.routes:
        if r.name == route:
            for leg in r.legs:
                if leg.destination == destination:
                    return leg.chain
    raise KeyError(f"route {route!r} of version {router.version} does not send to "
                   f"{destination!r}")


#: A trace step noted while the envelope is handled: (step, detail).
TraceNote = tuple[str, dict[str, object]]

#: Each chain run here, as one-step chains (built on first use, gone with their route set).
_STEPWISE: WeakKeyDictionary[Chain, tuple[tuple[str, Chain], ...]] = WeakKeyDictionary()


def _stepwise(chain: Chain) -> tuple[tuple[str, Chain], ...]:
    parts = _STEPWISE.get(chain)
    if parts is None:
        # Chain exposes its step names, not its steps. A one-step Chain per step keeps its
        # error handling (a failure names the step) identical to running the whole chain.
        parts = _STEPWISE[chain] = tuple((step[0], Chain((step,))) for step in chain._steps)
    return parts


def _transform(chain: Chain, env: Envelope, events: list[TraceNote],
               where: dict[str, object]) -> Envelope:
    """``chain(env)``, one step at a time: each step that succeeds adds a ``transformed``
    note (``where`` + the step's name and duration). Raises what the chain raises; the steps
    that ran before a failure or a drop keep their notes."""
    clock = time.perf_counter
    for name, step in _stepwise(chain):
        started = clock()
        env = step(env)
        events.append(("transformed", {**where, "transform": name,
                                       "duration_ms": round((clock() - started) * 1000, 3)}))
    return env


def _dead(env: Envelope, route: str, destination: str | None, exc: Exception,
          instance: str, *, leg: bool = False) -> Envelope:
    """The dead letter of a failed step. ``leg``: a destination's own step failed, and the
    envelope kept is the one before that destination's steps (a replay runs them again)."""
    log.warning("transform failed; dead-lettered", envelope_id=env.id, route=route,
                destination=destination, error=str(exc))
    detail: dict[str, Any] = {"reason": str(exc)}
    if leg:
        detail["stage"] = LEG_TRANSFORM
    return env.model_copy(update={"esbroute": route, "esbdestination": destination,
                                  "esberror": str(exc)}).with_hop(
        "dead-lettered", instance, **detail)


#: ``stage`` of a dead letter whose destination's own transform steps failed.
LEG_TRANSFORM = "destination-transform"


def failed_in_leg(env: Envelope) -> bool:
    """Whether ``env`` was dead-lettered by its destination's own steps (not by a delivery)."""
    for hop in reversed(env.esbhops):
        if hop.step == "dead-lettered":
            return hop.detail.get("stage") == LEG_TRANSFORM
    return False


def _deferred(exc: TransientTransformError, route: str,
              destination: str | None) -> TransformDeferred:
    """A step asked for a retry while the sender waits: nothing of the envelope is published
    (not even the copies already transformed) and the sender is told to send it again."""
    log.info("transform step asked for a retry; the sender is told to retry later",
             route=route, destination=destination, step=exc.step, error=str(exc))
    return TransformDeferred(exc.step, str(exc))


@dataclass
class SourceContext:
    """The :class:`~esb.adapters.spec.InboundContext` handed to one source's adapter."""

    name: str
    config_dir: Path
    instance: str
    max_body: int
    ingress: Ingress = field(repr=False)
    dedup: SharedIdempotency | None = field(default=None, repr=False)
    #: ``http.allowed_hosts``, for URLs the adapter calls itself (polling, token endpoints).
    allowed_hosts: tuple[str, ...] = ()
    #: This instance's waiting callers (request/reply); None: every route is one-way.
    calls: PendingCalls | None = field(default=None, repr=False)

    async def accept(self, envelope: Envelope) -> Accepted:
        return await self._accept(envelope, None)

    async def request(self, envelope: Envelope) -> Envelope | Accepted:
        """:meth:`accept`, and when a request/reply route takes the envelope, wait for the
        destination's answer: the reply envelope through the route's reply leg, or a failure
        reply (:func:`esb.bus.reply.problem_of`). One-way routes give the :class:`Accepted`."""
        calls = self.calls
        accepted = await self._accept(envelope, calls)
        call = calls.waiting(envelope.id) if calls is not None else None
        if call is None or calls is None:
            return accepted
        return calls.finish(call, await calls.wait(call))

    async def _accept(self, envelope: Envelope, calls: PendingCalls | None) -> Accepted:
        token = bind_message({"envelope_id": envelope.id,
                              "correlation_id": envelope.correlationid, "source": self.name})
        try:
            key = envelope.idempotencykey
            if not key or self.dedup is None:
                return await self.ingress.accept(envelope, self.name, calls)
            # Keys are scoped by source: two systems may well use the same key space.
            accepted, duplicate = await self.dedup.run(
                f"{self.name}\x00{key}", lambda: self.ingress.accept(envelope, self.name, calls))
            return replace(accepted, duplicate=True) if duplicate else accepted
        finally:
            unbind_message(token)
