"""Ingress: an accepted envelope is routed by one route-set version, transformed, and
published to every destination it goes to — and only then is the sender told it was accepted.

Routing and transforming happen here, once, so an envelope is handled wholly by the route set
that was current when it arrived (recorded in ``esbrouteversion``), and each destination queue
holds envelopes already in that destination's format. What happens is decided by the dispatch
plan (:mod:`esb.bus.routing.dispatch`); the ingress publishes it, then records its trace notes.

A route that enriches (``enrich:``) needs a destination's answer before its plan is complete:
:meth:`Ingress.plan` asks for every answer the plan names, through the bus like any
request/reply call (this instance's :class:`~esb.bus.runtime.calls.PendingCalls`), and plans
again with them — so the sender's answer waits for the enrichment, at most its ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.spec import Accepted, HttpRoute
from esb.bus.broker.base import DEAD_LETTER, UNROUTABLE, Bus, destination_address
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, CommitUncertain, TransformDeferred
from esb.bus.payload import DEFAULT_JSON_DEPTH
from esb.bus.reply import failure_envelope
from esb.bus.routing.dispatch import plan, plan_async
from esb.bus.routing.enrich import EnrichCall
from esb.bus.routing.plan import COPY, DEAD, Outcome, Plan, ReplyPlan
from esb.bus.routing.router import ReplyLeg, Router
from esb.bus.runtime.calls import PendingCalls
from esb.bus.runtime.idempotency import Seal, SharedIdempotency, fingerprint
from esb.bus.runtime.logs import bind_message, unbind_message
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.ordering import Partitioner
from esb.bus.runtime.trace import MemoryTrace, TraceRecorder
from esb.bus.xmlsafe import DEFAULT_LIMITS, XmlLimits

log = structlog.get_logger("esb.ingress")

#: How long a sender waits for its envelope to be secured after an unanswered commit (see
#: :meth:`Ingress._secure`); the securing goes on after that, for up to ``SECURE_FOR``.
SECURE_WAIT = 10.0
SECURE_FOR = 600.0


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
        self._securing: set[asyncio.Task[None]] = set()
        #: Set by the daemon once the route store's current version is installed: until
        #: then an envelope would be routed by the local files, not the deployed set.
        self.open = True
        #: This instance's waiting calls, which enrichment requests wait among (set by the
        #: daemon; None: an enriching route cannot be answered here).
        self.calls: PendingCalls | None = None

    async def accept(self, envelope: Envelope, endpoint: str,
                     calls: PendingCalls | None = None, *, only_requests: bool = False,
                     seal: Seal | None = None) -> Accepted:
        """Plan, then publish ``envelope``; return once every copy is confirmed. ``calls``:
        the sender can wait for an answer (request/reply), see :meth:`publish`;
        ``only_requests``: publish nothing unless a request/reply route takes it (a GraphQL
        query has no one-way meaning); ``seal``: the record it builds (that the envelope's
        idempotency key was taken) is committed in one transaction with the copies."""
        if not self.open:
            raise BusUnavailable("starting: the deployed route set is not loaded yet")
        planned = await self.plan(envelope, endpoint)
        if only_requests and planned.reply is None:
            return Accepted(envelope.id, ())
        accepted = await self.publish(planned, calls, seal)
        self.metrics.child(self.metrics.received, endpoint).inc()
        return accepted

    async def plan(self, envelope: Envelope, endpoint: str | None) -> Plan:
        """The dispatch plan of ``envelope`` under the route set in force, with every
        enrichment it needs asked for and merged (publishes nothing else)."""
        router = self.routes.current  # one route-set snapshot for the whole envelope
        answers: dict[str, Envelope] = {}
        while True:
            if router.enrich_waits:
                # An enrichment's steps wait on the XSLT sandbox process and run in place:
                # planned in a thread, so this instance serves other requests meanwhile.
                planned = await asyncio.to_thread(plan, router, envelope, endpoint,
                                                  instance=self.instance, answers=answers)
            else:
                # Steps that wait on the sandbox are awaited (a runaway stylesheet too); every
                # other step runs in place, as it would in plan().
                planned = await plan_async(router, envelope, endpoint, instance=self.instance,
                                           answers=answers)
            if not planned.pending:
                return planned
            # Each round answers every request named, so a later round names new ones only.
            got = await asyncio.gather(*(self.ask(call) for call in planned.pending))
            answers.update((call.key, answer) for call, answer in zip(planned.pending, got,
                                                                       strict=True))

    async def ask(self, call: EnrichCall) -> Envelope:
        """An enrichment request's answer (after the enricher's ``reply`` steps), or its
        failure reply: asked through the bus, or from the response cache."""
        calls = self.calls
        enricher = call.enricher
        if calls is None:
            return failure_envelope(call.request, "unavailable", "this esb instance cannot "
                                    "wait for answers", 503, destination=enricher.destination)
        reply = ReplyPlan(call.route, enricher.destination,
                          ReplyLeg(enricher.timeout, enricher.reply, enricher.cache),
                          call.request)
        out = calls.expect(call.key, call.request, reply, time.time() + enricher.timeout)
        if out is not None:
            dest = enricher.destination
            part = self.partitioners.get(dest)
            try:
                await self.bus.publish(part.address(out) if part else destination_address(dest),
                                       out)
            except BaseException:
                calls.forget(call.key)
                raise
        waiting = calls.waiting(call.key)
        assert waiting is not None
        return await calls.answer(waiting)

    async def publish(self, planned: Plan, calls: PendingCalls | None = None,
                      seal: Seal | None = None) -> Accepted:
        """Carry ``planned`` out: publish every copy and record, wait for every confirm, then
        record its trace notes. Raises ``TransformDeferred`` (nothing published) when a step
        asked for a retry.

        With ``calls``, the plan's request/reply route (if any) registers the sender there
        (by the envelope's id) and its copy carries the reply address; without, it is
        delivered one-way like any other."""
        deferred = planned.deferred
        if deferred is not None:
            self.metrics.transform_failed.labels(deferred.route, deferred.destination or "",
                                                 deferred.step, "transient").inc()
            log.info("transform step asked for a retry; the sender is told to retry later",
                     route=deferred.route, destination=deferred.destination,
                     step=deferred.step, error=str(deferred.error))
            raise TransformDeferred(deferred.step, str(deferred.error)) from deferred.error
        publishes: list[tuple[str, Envelope]] = []
        dead: list[Outcome] = []
        reply = planned.reply if calls is not None else None
        if reply is not None and reply.request is None:
            calls.refuse(planned.envelope, reply)  # type: ignore[union-attr]
        for o in planned.outcomes:
            kind, out = o.kind, o.envelope
            if out is None:  # dropped
                continue
            if kind == COPY:
                if reply is not None and out is reply.request:
                    out = calls.expect(planned.envelope.id, out, reply,  # type: ignore[union-attr]
                                       planned.at.timestamp() + reply.leg.timeout,
                                       planned.envelope)
                    if out is None:  # answered from the route's response cache
                        continue
                dest = o.destination or ""
                part = self.partitioners.get(dest)
                publishes.append((part.address(out) if part else destination_address(dest),
                                  out))
                self.metrics.child(self.metrics.routed, o.route or "", dest).inc()
            elif kind == DEAD:
                log.warning("transform failed; dead-lettered", envelope_id=out.id,
                            route=o.route, destination=o.destination, error=o.error)
                publishes.append((DEAD_LETTER, out))
                dead.append(o)
            else:
                publishes.append((UNROUTABLE, out))
                self.metrics.child(self.metrics.unroutable, planned.endpoint or "").inc()
        eid = planned.envelope.id
        accepted = Accepted(eid, tuple(a for a, _ in publishes))
        try:
            if seal is not None or planned.parts:
                # A split is published whole or not at all; so is an envelope with the record
                # of its idempotency key.
                record = seal(accepted) if seal is not None else None
                try:
                    await self.bus.publish_atomically(publishes,
                                                      [record] if record else [])
                except CommitUncertain:
                    if record is None:
                        raise  # nothing says it was taken: the sender's retry publishes it
                    await self._secure(eid, publishes, record)
            elif len(publishes) == 1:
                await self.bus.publish(*publishes[0])
            elif publishes:
                await asyncio.gather(*(self.bus.publish(a, e) for a, e in publishes))
        except BaseException:
            if reply is not None:
                calls.forget(planned.envelope.id)  # type: ignore[union-attr]
            raise
        for o in dead:  # counted once the records are safely published
            self.metrics.child(self.metrics.dead_lettered, o.destination or "").inc()
            self.metrics.child(self.metrics.transform_failed, o.route or "", o.destination or "",
                          o.step or "", "permanent").inc()
        record = self.trace.record
        at = planned.at.timestamp()
        for step, detail in planned.notes:
            record(eid, step, at=at, **detail)
        return accepted

    async def _secure(self, eid: str, publishes: list[tuple[str, Envelope]],
                      record: tuple[str, bytes]) -> None:
        """After a commit that was sent and not answered: the broker may have kept the record
        that the key was taken and not every copy (a node failed in the middle of the commit),
        and a repeat of the key would then be answered as a duplicate of copies that do not
        exist. So the copies are published again, each confirmed, and the record after them,
        until that succeeds (a copy the commit did keep is delivered twice, and dropped by its
        key at the destination). The sender waits ``SECURE_WAIT`` for that, then is told to
        retry; the securing goes on regardless."""
        log.warning("a commit was not answered; publishing the copies again", envelope_id=eid)
        task = asyncio.get_running_loop().create_task(self._republish(eid, publishes, record))
        self._securing.add(task)
        task.add_done_callback(self._securing.discard)
        try:
            await asyncio.wait_for(asyncio.shield(task), SECURE_WAIT)
        except TimeoutError:
            raise BusUnavailable("the bus did not confirm the envelope in time; retry") from None

    async def _republish(self, eid: str, publishes: list[tuple[str, Envelope]],
                         record: tuple[str, bytes]) -> None:
        deadline = asyncio.get_running_loop().time() + SECURE_FOR
        delay = 0.25
        while True:
            try:
                await self.bus.publish_in_order(publishes, [record])
                log.info("envelope secured after an unanswered commit", envelope_id=eid)
                return
            except Exception as exc:
                if asyncio.get_running_loop().time() > deadline:
                    log.error("could not secure an envelope after an unanswered commit",
                              envelope_id=eid, error=str(exc))
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


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
    #: ``limits.xml`` and ``limits.json.max_depth``, for the bodies the adapter reads.
    xml_limits: XmlLimits = DEFAULT_LIMITS
    json_depth: int = DEFAULT_JSON_DEPTH
    #: The source's state document (on the broker with RabbitMQ; see ``Leases``).
    state: Any = field(default=None, repr=False)

    #: This instance's waiting callers (request/reply); None: every route is one-way.
    calls: PendingCalls | None = field(default=None, repr=False)
    #: :meth:`request` waits for answers (``InboundContext.replies``).
    replies = True

    @property
    def metrics(self) -> Metrics:
        return self.ingress.metrics

    def rejected(self, reason: str) -> None:
        self.ingress.metrics.child(self.ingress.metrics.rejected, self.name, reason).inc()

    def counting_refusals(self, route: HttpRoute) -> HttpRoute:
        """``route`` with every answer of 400 or more counted as ``esb_rejected`` (the status
        is the reason): one place for every HTTP adapter, plugins included."""
        handler = route.handler

        async def counted(request: Request) -> Response:
            response = await handler(request)
            if response.status_code >= 400:
                self.rejected(str(response.status_code))
            return response

        return replace(route, handler=counted)

    async def accept(self, envelope: Envelope) -> Accepted:
        return await self._accept(envelope, None)

    async def request(self, envelope: Envelope, *, one_way: bool = True
                      ) -> Envelope | Accepted:
        """:meth:`accept`, and when a request/reply route takes the envelope, wait for the
        destination's answer: the reply envelope through the route's reply leg, or a failure
        reply (:func:`esb.bus.reply.problem_of`). One-way routes give the :class:`Accepted`;
        with ``one_way=False`` nothing is published then, and the answer is an
        ``unanswerable`` failure (404)."""
        calls = self.calls
        accepted = await self._accept(envelope, calls, not one_way)
        call = calls.waiting(envelope.id) if calls is not None else None
        if call is None or calls is None:
            if not one_way:
                return failure_envelope(envelope, "unanswerable", f"no request/reply route "
                                        f"answers {envelope.type!r} from {self.name!r}", 404)
            return accepted
        return await calls.answer(call)

    async def _accept(self, envelope: Envelope, calls: PendingCalls | None,
                      only_requests: bool = False) -> Accepted:
        token = bind_message({"envelope_id": envelope.id,
                              "correlation_id": envelope.correlationid, "source": self.name})
        try:
            key = envelope.idempotencykey
            if not key or self.dedup is None:
                return await self.ingress.accept(envelope, self.name, calls,
                                                 only_requests=only_requests)
            # Keys are scoped by source: two systems may well use the same key space.
            return await self.dedup.run(
                f"{self.name}\x00{key}", fingerprint(envelope),
                lambda seal: self.ingress.accept(envelope, self.name, calls,
                                                 only_requests=only_requests, seal=seal))
        finally:
            unbind_message(token)
