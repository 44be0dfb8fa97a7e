"""The dispatch plan: what a route set does to one envelope, computed without any I/O.

:func:`plan` is the one place route semantics live. The ingress publishes the plan it returns,
``esb routes test`` prints it, and a replay re-plans (:func:`plan_leg` for a destination whose
own steps failed). It is written once, as coroutines: the ``*_async`` entry points await the
steps that wait on another process (the daemon, on its event loop); the plain ones run every
step in place and never suspend (the command line, tests, a thread). Rules, in order:

* the routes that fire are the router's (priority, then file order; ``exclusive`` prunes);
  none fire: one ``unroutable`` record;
* each firing route runs its own steps once, for all its destinations; then each destination
  (leg) runs its own steps on that result and gets a copy stamped with a ``routed`` hop;
  steps see ``esbroute`` (and ``esbdestination``: a destination's own steps always, a route's
  steps when the route has one destination) before they run;
* a step raising ``DropEnvelope`` filters that route (or that destination) out; a
  ``TransformError`` dead-letters it (a :func:`~esb.bus.deadletter.dead_letter` record, the
  envelope kept as it was before the failing chain); the other routes and legs go on;
* a step raising ``TransientTransformError`` defers the WHOLE envelope: nothing of it is
  published, the sender is told to retry (:attr:`Plan.deferred`).

Each step that succeeds is a ``transformed`` trace note; the notes are recorded by whoever
carries the plan out (never for an envelope that was not taken).

Enrichment is part of the plan: a firing route with ``enrich:`` needs its destination's answer
(:mod:`esb.bus.routing.enrich`). Given it (``answers``, by request id), the answer is merged and
the route goes on from the enriched envelope — and an enricher without ``to`` hands it to the
routes after it in firing order, matched again; without it, the plan stops and names what it
needs (:attr:`Plan.pending`: nothing else is planned), and the caller asks and plans again.

The plan's records (:class:`~esb.bus.routing.plan.Plan` and its parts) are in
:mod:`esb.bus.routing.plan`.

Request/reply (§12) is part of the plan too: the first firing route with ``reply:`` is the
one the caller waits for (:attr:`Plan.reply`: its copy is the request; when its steps failed
or dropped it, the caller is answered with that failure), and :func:`reply_answer` is the way
back — the route's reply leg run on the destination's reply, giving what the caller gets. Other
request/reply routes that fire deliver one-way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from esb.bus.deadletter import LEG_TRANSFORM, ROUTE_TRANSFORM, dead_letter
from esb.bus.envelope import Envelope, Hop, utcnow
from esb.bus.errors import DropEnvelope, TransformError, TransientTransformError
from esb.bus.reply import failure_envelope, problem_of
from esb.bus.routing.enrich import failed, merged, request_for
from esb.bus.routing.plan import (
    COPY,
    DEAD,
    DROPPED,
    UNROUTABLE,
    Deferral,
    Outcome,
    Plan,
    ReplyPlan,
    TraceNote,
)
from esb.bus.routing.router import CompiledRoute, Leg, Router
from esb.bus.routing.split import SplitError
from esb.transformers.chain import Chain, completed

#: What a step raises to stop a route or a destination (:func:`_stopped`).
_STOPS = (DropEnvelope, TransformError, TransientTransformError)


def plan(router: Router, envelope: Envelope, endpoint: str | None, *,
         instance: str | None = None, now: datetime | None = None,
         answers: Mapping[str, Envelope] | None = None) -> Plan:
    """The plan of ``envelope`` entering through ``endpoint`` under ``router``'s route set.
    Runs the transform steps (they are part of the plan); publishes nothing. ``answers``: the
    enrichment answers known so far, by request id (:attr:`Plan.pending` names the ones
    still needed)."""
    return completed(_plan(router, envelope, endpoint, instance, now, answers, False))


async def plan_async(router: Router, envelope: Envelope, endpoint: str | None, *,
                     instance: str | None = None, now: datetime | None = None,
                     answers: Mapping[str, Envelope] | None = None) -> Plan:
    """:func:`plan` on the event loop: the steps that wait on another process (XSLT in its
    sandbox) are awaited (:meth:`Chain.run`), so the loop serves other work meanwhile. The
    enrichment's own request and merge steps still run in place: a router whose enrichments
    wait (:attr:`Router.enrich_waits`) is planned with :func:`plan` in a thread."""
    return await _plan(router, envelope, endpoint, instance, now, answers, True)


async def _plan(router: Router, envelope: Envelope, endpoint: str | None,
                instance: str | None, now: datetime | None,
                answers: Mapping[str, Envelope] | None, awaiting: bool) -> Plan:
    now = now or utcnow()
    version = router.version
    accepted = Hop(at=now, step="accepted", instance=instance, detail={"endpoint": endpoint})
    # The stamped envelope is what routes match and steps see; when the route set only looks
    # at the endpoint and the firing routes transform nothing (pass-through, fan-out), each
    # copy is stamped once, straight from the envelope received.
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
    p = Plan(envelope, endpoint, version, now, fired)
    outcomes, notes = p.outcomes, p.notes
    accepted_note: dict[str, object] = {"endpoint": endpoint, "version": version}
    # what `esb trace KEY` and the console's search find the envelope by (trace.SEARCHABLE)
    if envelope.idempotencykey:
        accepted_note["key"] = envelope.idempotencykey
    if envelope.correlationid:
        accepted_note["correlationid"] = envelope.correlationid
    notes.append(("accepted", accepted_note))
    if not fired:
        notes.append(("unroutable", {"version": version}))
        record = stamped().model_copy(update={
            "esberror": f"no route of version {version} matched"}).with_hop(
            "unroutable", instance)
        outcomes.append(Outcome(None, None, UNROUTABLE, record))
        return p
    inputs: dict[str, Envelope | None] = {}
    if any(r.enrich is not None for r in fired):
        inputs = _enrich(p, router, stamped, answers or {}, instance)
        if p.pending or p.deferred is not None:
            return p
    for route in p.fired:
        start, get, acc = envelope, stamped, accepted
        if route.name in inputs:
            enriched = inputs[route.name]
            if enriched is None:  # its enrichment already dead-lettered or dropped it
                continue
            start, get, acc = enriched, (lambda e=enriched: e), None
        if not route.legs:  # an enricher for the routes after it: done
            continue
        if route.split is None:
            if not await _route(p, route, start, get, acc, instance, awaiting):
                return p
            continue
        try:
            parts = route.split(get())
        except SplitError as exc:  # dead-lettered like a failed step named "split"
            _dead(p, get(), route.name, None, TransformError("split", str(exc)),
                  ROUTE_TRANSFORM, instance)
            continue
        notes.append(("split", {"route": route.name, "parts": len(parts)}))
        p.parts += len(parts)
        for part in parts:
            if not await _route(p, route, part, lambda part=part: part, None, instance,
                                awaiting):
                return p
    p.reply = _reply(p)
    if p.reply is not None and p.reply.request is not None:
        _mark_request_leg(p, p.reply)
    return p


def _mark_request_leg(p: Plan, reply: ReplyPlan) -> None:
    """The ``routed`` note of the copy the caller waits for names it the request leg, with
    the route's timeout (how ``esb trace`` tells the legs of a call apart)."""
    for i, (step, detail) in enumerate(p.notes):
        if step == "routed" and detail.get("route") == reply.route \
                and detail.get("destination") == reply.destination:
            p.notes[i] = (step, {**detail, "leg": "request", "timeout": reply.leg.timeout})
            return


def _enrich(p: Plan, router: Router, stamped: Callable[[], Envelope],
            answers: Mapping[str, Envelope], instance: str | None) -> dict[str, Envelope | None]:
    """Resolve the firing routes' enrichments in firing order: per route name, the envelope
    the route starts from when it is not the one received (None: its enrichment failed or
    dropped it). An enricher without ``to`` replaces the routes after it by those its
    enriched envelope fires (``p.fired`` changes). Stops at a missing answer an enricher
    without ``to`` needs (``p.pending``) and at a deferral."""
    inputs: dict[str, Envelope | None] = {}
    current: Envelope | None = None  # after the enrichers without ``to`` so far
    fired = list(p.fired)
    i = 0
    while i < len(fired):
        route = fired[i]
        base = current if current is not None else stamped()
        if route.enrich is None:
            if current is not None:
                inputs[route.name] = current
            i += 1
            continue
        only_enriches = not route.legs
        got = _enrich_route(p, route, base, stamped(), answers, instance)
        if p.deferred is not None:
            return inputs
        if got is None:  # waiting for its answer, or failed for good
            if only_enriches:  # the routes after it depended on it
                fired = fired[:i + 1]
                break
            inputs[route.name] = None
        elif only_enriches:
            if got is not base:
                current = got
                fired = [*fired[:i + 1], *router.match_after(got, route)]
        else:
            inputs[route.name] = got
        i += 1
    p.fired = fired
    if p.pending:
        p.outcomes.clear()
    elif not p.outcomes and not any(r.legs for r in fired):
        env = current if current is not None else stamped()
        p.notes.append(("unroutable", {"version": p.version}))
        p.outcomes.append(Outcome(None, None, UNROUTABLE, env.model_copy(update={
            "esberror": f"no route of version {p.version} matched the enriched envelope"}
            ).with_hop("unroutable", instance)))
    return inputs


def _enrich_route(p: Plan, route: CompiledRoute, base: Envelope, received: Envelope,
                  answers: Mapping[str, Envelope], instance: str | None) -> Envelope | None:
    """``base`` enriched by ``route``'s enricher; ``base`` itself when its request steps
    dropped the request or the answer failed and ``on_failure`` is ``continue``; None when
    the answer is missing (added to ``p.pending``) or the route is dead-lettered or deferred
    (recorded in ``p``; a dead letter keeps ``received``: a replay plans it all again)."""
    enricher = route.enrich
    assert enricher is not None
    name, dest = route.name, enricher.destination
    where = {"route": name, "destination": dest}
    try:
        call = request_for(name, enricher, base)
        answer = answers.get(call.key)
        if answer is None:
            p.pending.append(call)
            return None
        problem = problem_of(answer)
        if problem is not None:
            if enricher.on_failure == "continue":
                p.notes.append(("enrich-failed", {**where, "error": problem.detail[:500],
                                                  "continued": True}))
                return base
            raise failed(enricher, problem)
        out = merged(enricher, base, answer)
    except _STOPS as exc:
        _stopped(p, exc, name, None, received, ROUTE_TRANSFORM, instance)
        return base if isinstance(exc, DropEnvelope) and not route.legs else None
    p.notes.append(("enriched", {**where, "request": call.key}))
    return out


async def _route(p: Plan, route: CompiledRoute, envelope: Envelope,
                 stamped: Callable[[], Envelope], accepted: Hop | None, instance: str | None,
                 awaiting: bool) -> bool:
    """Plan one route for ``envelope`` (or one part of its split): the route's own steps, then
    each destination's copy. ``accepted`` is given when ``envelope`` is the raw envelope (a
    copy nothing transforms is then stamped once, straight from it). False when deferred."""
    name, outcomes, notes = route.name, p.outcomes, p.notes
    routed: Envelope | None = None  # the route's own steps applied, once per route
    if route.chain:
        # The route's steps see which route runs them (and the destination, when the
        # route has only one): a stylesheet formats per route or per destination.
        only = route.legs[0].destination if len(route.legs) == 1 else None
        try:
            routed = await _run(route.chain, stamped().model_copy(update={
                "esbroute": name, "esbdestination": only}), notes, {"route": name}, awaiting)
        except _STOPS as exc:
            return _stopped(p, exc, name, None, stamped(), ROUTE_TRANSFORM, instance)
    for leg in route.legs:
        dest = leg.destination
        hop = Hop(at=p.at, step="routed", instance=instance,
                  detail={"route": name, "destination": dest, "version": p.version})
        if routed is None and not leg.chain and accepted is not None:
            out = envelope.model_copy(update={  # nothing transforms it: one copy
                "esbendpoint": p.endpoint, "esbrouteversion": p.version,
                "esbroute": name, "esbdestination": dest,
                "esbhops": [*envelope.esbhops, accepted, hop]})
            outcomes.append(Outcome(name, dest, COPY, out))
            notes.append(("routed", {"route": name, "version": p.version,
                                     "destination": dest}))
        elif not await _leg(p, name, leg, routed if routed is not None else stamped(), hop,
                            instance, awaiting):
            return False
    return True


def _reply(p: Plan) -> ReplyPlan | None:
    """The first firing request/reply route, with its planned request (or why there is none)."""
    route = next((r for r in p.fired if r.reply is not None), None)
    if route is None or route.reply is None:
        return None
    dest = route.legs[0].destination
    for o in p.outcomes:
        if o.route == route.name and o.destination in (dest, None):
            if o.kind == COPY:
                return ReplyPlan(route.name, dest, route.reply, o.envelope)
            return ReplyPlan(route.name, dest, route.reply, None,
                             o.error or f"a step of route {route.name!r} dropped the request")
    return None  # pragma: no cover - every firing route leaves an outcome


def reply_answer(reply: ReplyPlan, request: Envelope, got: Envelope,
                 notes: list[TraceNote] | None = None) -> Envelope:
    """What the caller gets for ``got``, the destination's reply to ``request``: a failure
    reply as it is; a successful one through the route's reply leg (a step that fails or
    drops it: a 502 naming the step, the destination is not called again)."""
    return completed(_reply_answer(reply, request, got, notes, False))


async def reply_answer_async(reply: ReplyPlan, request: Envelope, got: Envelope,
                             notes: list[TraceNote] | None = None) -> Envelope:
    """:func:`reply_answer` on the event loop (the reply leg's waiting steps awaited)."""
    return await _reply_answer(reply, request, got, notes, True)


async def _reply_answer(reply: ReplyPlan, request: Envelope, got: Envelope,
                        notes: list[TraceNote] | None, awaiting: bool) -> Envelope:
    if problem_of(got) is not None or not reply.leg.chain:
        return got
    where = {"route": reply.route, "destination": reply.destination, "leg": "reply"}
    try:
        return await _run(reply.leg.chain, got, notes if notes is not None else [], where,
                          awaiting)
    except (TransformError, TransientTransformError) as exc:
        return failure_envelope(request, "transform", f"the reply from {reply.destination!r} "
                                f"could not be transformed: {exc}", 502,
                                destination=reply.destination, step=exc.step)
    except DropEnvelope:
        return failure_envelope(request, "transform", f"a reply step of route {reply.route!r} "
                                f"dropped the reply from {reply.destination!r}", 502,
                                destination=reply.destination)


def plan_leg(router: Router, envelope: Envelope, route: str, destination: str, *,
             instance: str | None = None, now: datetime | None = None) -> Plan:
    """The plan of one destination's own steps (and its copy) for an envelope that has
    already been through ``route``'s own steps — a replay of a :data:`LEG_TRANSFORM` dead
    letter. KeyError when ``route`` no longer sends to ``destination``."""
    return completed(_plan_leg(router, envelope, route, destination, instance, now, False))


async def plan_leg_async(router: Router, envelope: Envelope, route: str, destination: str, *,
                         instance: str | None = None, now: datetime | None = None) -> Plan:
    """:func:`plan_leg` on the event loop (the leg's waiting steps awaited)."""
    return await _plan_leg(router, envelope, route, destination, instance, now, True)


async def _plan_leg(router: Router, envelope: Envelope, route: str, destination: str,
                    instance: str | None, now: datetime | None, awaiting: bool) -> Plan:
    now = now or utcnow()
    compiled, leg = _find_leg(router, route, destination)
    p = Plan(envelope, envelope.esbendpoint, router.version, now, [compiled])
    hop = Hop(at=now, step="routed", instance=instance,
              detail={"route": route, "destination": destination, "version": router.version})
    await _leg(p, route, leg, envelope.model_copy(update={"esbrouteversion": router.version}),
               hop, instance, awaiting)
    return p


def _find_leg(router: Router, route: str, destination: str) -> tuple[CompiledRoute, Leg]:
    for r in router.routes:
        if r.name == route:
            for leg in r.legs:
                if leg.destination == destination:
                    return r, leg
    raise KeyError(f"route {route!r} of version {router.version} does not send to "
                   f"{destination!r}")


async def _leg(p: Plan, route: str, leg: Leg, env: Envelope, hop: Hop, instance: str | None,
               awaiting: bool) -> bool:
    """Plan one destination's copy from ``env`` (the route's result); False if deferred."""
    dest = leg.destination
    out = env
    if leg.chain:
        try:
            # stamped before the steps, which see their route and destination
            out = await _run(leg.chain, env.model_copy(update={"esbroute": route,
                                                                 "esbdestination": dest}),
                             p.notes, {"route": route, "destination": dest}, awaiting)
        except _STOPS as exc:
            # A dead letter keeps the envelope before this destination's steps: a replay
            # runs them again.
            return _stopped(p, exc, route, dest, env, LEG_TRANSFORM, instance)
    out = out.model_copy(update={"esbroute": route, "esbdestination": dest,
                                 "esbhops": [*out.esbhops, hop]})
    p.outcomes.append(Outcome(route, dest, COPY, out))
    p.notes.append(("routed", {"route": route, "version": p.version, "destination": dest}))
    return True


async def _run(chain: Chain, env: Envelope, notes: list[TraceNote], where: dict[str, object],
               awaiting: bool) -> Envelope:
    """``chain(env)``, each step that succeeds noted as ``transformed`` (``where`` + the
    step's name and duration); the steps before a failure or a drop keep their notes.
    ``awaiting``: the steps that wait are awaited (:meth:`Chain.run`)."""
    def done(step: str, seconds: float) -> None:
        notes.append(("transformed", {**where, "transform": step,
                                      "duration_ms": round(seconds * 1000, 3)}))

    return await chain.run(env, done, awaiting=awaiting)


def _dead(p: Plan, env: Envelope, route: str, destination: str | None, exc: TransformError,
          stage: str, instance: str | None) -> None:
    error = str(exc)
    record = dead_letter(env, error, stage=stage, instance=instance, route=route,
                         destination=destination, at=p.at)
    p.outcomes.append(Outcome(route, destination, DEAD, record, error, exc.step))
    detail: dict[str, object] = {"route": route, "error": error}
    if destination is not None:
        detail = {"route": route, "destination": destination, "error": error}
    p.notes.append(("transform-failed", detail))


def _stopped(p: Plan, exc: DropEnvelope | TransformError | TransientTransformError,
             route: str, destination: str | None, kept: Envelope, stage: str,
             instance: str | None) -> bool:
    """What a step that stopped ``route`` (or its ``destination``) does: a drop filters it
    out; a failure dead-letters ``kept``; a retry defers the whole envelope — nothing of it
    is taken, not even the copies already planned (False: stop planning)."""
    if isinstance(exc, DropEnvelope):
        p.outcomes.append(Outcome(route, destination, DROPPED))
    elif isinstance(exc, TransformError):
        _dead(p, kept, route, destination, exc, stage, instance)
    else:
        p.deferred = Deferral(route, destination, exc)
        p.outcomes.clear()
        p.notes.clear()
        return False
    return True
