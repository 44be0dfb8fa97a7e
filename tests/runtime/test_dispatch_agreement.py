"""The ingress, ``esb routes test`` and replay agree, because all three carry out the one
dispatch plan: for each case of the table, what the ingress publishes, what the route test
says, and what a replay of the same envelope from the unroutable queue publishes are the same
(the copies with their destinations and data, the dead letters with their stage, a deferral,
the unroutable record). Embedded bus: no broker."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esb.bus.broker.base import DEAD_LETTER, UNROUTABLE, destination_address
from esb.bus.broker.embedded import EmbeddedBus
from esb.bus.deadletter import stage_of
from esb.bus.envelope import Envelope
from esb.bus.errors import TransformDeferred
from esb.bus.routing.plan import COPY, DEAD, Plan
from esb.bus.routing.plan import UNROUTABLE as UNROUTABLE_KIND
from esb.bus.routing.router import Router, compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.routing.trial import route_envelope
from esb.bus.runtime.deadletters import DeadLetters
from esb.bus.runtime.ingress import Ingress, RouterHolder
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.trace import MemoryTrace

STEPS = """
from esb.bus.errors import TransientError

def tag(env):
    return {**env.data, "tagged": True}

def upper(env):
    return {k: (v.upper() if isinstance(v, str) else v) for k, v in env.data.items()}

def fail(env):
    raise ValueError("no customer")

def later(env):
    raise TransientError("lookup service down")
"""

DESTINATIONS = ("erp", "crm", "audit", "archive")

CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "fan-out": ("""
routes:
  - name: orders
    from: [shop]
    to: [erp, audit, archive]
""", {"country": "de"}, "shop"),
    "exclusive-priority": ("""
routes:
  - name: low
    match: {type: [order]}
    to: [archive]
  - name: vip
    priority: 10
    exclusive: true
    match: {data: {vip: [true]}}
    to: [crm]
  - name: high
    priority: 20
    match: {type: [order]}
    to: [audit]
""", {"country": "de", "vip": True}, "shop"),
    "route-and-leg-transforms": ("""
routes:
  - name: orders
    from: [shop]
    transform: [agree_steps:tag]
    to:
      - destination: erp
        transform: [agree_steps:upper]
      - audit
""", {"country": "de"}, "shop"),
    "failing-step": ("""
routes:
  - name: checked
    from: [shop]
    transform: [agree_steps:fail]
    to: [erp]
  - name: orders
    from: [shop]
    to:
      - destination: crm
        transform: [agree_steps:fail]
      - audit
""", {"country": "de"}, "shop"),
    "transient-step": ("""
routes:
  - name: copy
    from: [shop]
    to: [archive]
  - name: enrich
    from: [shop]
    transform: [agree_steps:later]
    to: [crm]
""", {"country": "de"}, "shop"),
    "unroutable": ("""
routes:
  - name: orders
    from: [shop]
    match: {type: [invoice]}
    to: [erp]
""", {"country": "de"}, "shop"),
}


@pytest.fixture
def steps(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "agree_steps.py").write_text(STEPS)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("agree_steps", None)


def compiled(base: Path, routes: str) -> Router:
    return compile_routes(parse_route_files({"r.yaml": routes}, base=base),
                          sources={"shop"}, destinations=set(DESTINATIONS), base_dir=base,
                          version=3)


Seen = list[tuple[str, str | None, str | None, Any, str | None]]


def from_plan(plan: Plan) -> Seen | str:
    if plan.deferred is not None:
        return f"deferred by {plan.deferred.step}"
    address = {COPY: lambda o: destination_address(o.destination), DEAD: lambda o: DEAD_LETTER,
               UNROUTABLE_KIND: lambda o: UNROUTABLE}
    return sorted((address[o.kind](o), o.envelope.esbroute, o.envelope.esbdestination,
                   o.envelope.data, stage_of(o.envelope))
                  for o in plan.outcomes if o.envelope is not None)


async def from_queues(bus: EmbeddedBus) -> Seen:
    seen: Seen = []
    for address in (*(destination_address(d) for d in DESTINATIONS), DEAD_LETTER,
                    UNROUTABLE):
        for env in await bus.browse(address, 100):
            stage = stage_of(env) if address == DEAD_LETTER else None
            seen.append((address, env.esbroute, env.esbdestination, env.data, stage))
        await bus.purge(address)
    return sorted(seen)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_ingress_route_test_and_replay_agree(case: str, steps: Path) -> None:
    routes, data, endpoint = CASES[case]
    router = compiled(steps, routes)
    env = Envelope(source="shop", type="order", data=data)

    planned = from_plan(route_envelope(router, env, endpoint))

    bus = EmbeddedBus()
    await bus.start(DESTINATIONS)
    trace = MemoryTrace("i1")
    ingress = Ingress(bus, RouterHolder(router), Metrics(), "i1", trace=trace)
    try:
        await ingress.accept(env, endpoint)
        ingested: Seen | str = await from_queues(bus)
    except TransformDeferred as exc:
        ingested = f"deferred by {exc.step}"

    # the same envelope, waiting in the unroutable queue, replayed under the same route set
    await bus.publish(UNROUTABLE, env.model_copy(update={"esbendpoint": endpoint}))
    replayer = DeadLetters(bus, ingress, DESTINATIONS, {}, "i1", trace)
    try:
        await replayer.replay("unroutable")
        replayed: Seen | str = await from_queues(bus)
    except TransformDeferred as exc:
        replayed = f"deferred by {exc.step}"
    await bus.close()

    assert ingested == planned
    assert replayed == planned
    assert planned  # every case leads somewhere (or is deferred)


async def test_a_replayed_leg_failure_is_what_the_plan_says(steps: Path) -> None:
    routes, data, endpoint = CASES["failing-step"]
    router = compiled(steps, routes)
    bus = EmbeddedBus()
    await bus.start(DESTINATIONS)
    trace = MemoryTrace("i1")
    ingress = Ingress(bus, RouterHolder(router), Metrics(), "i1", trace=trace)
    env = Envelope(source="shop", type="order", data=data)
    await ingress.accept(env, endpoint)
    dead = [(e.esbroute, e.esbdestination, stage_of(e))
            for e in await bus.browse(DEAD_LETTER, 9)]
    assert dead == [("checked", None, "route-transform"),
                    ("orders", "crm", "destination-transform")]
    await bus.purge(destination_address("audit"))
    replayer = DeadLetters(bus, ingress, DESTINATIONS, {}, "i1", trace)
    result = await replayer.replay("dlq")
    # the route-stage one got somewhere (audit's copy); the leg-stage one failed again
    assert (result.replayed, result.failed) == (1, 1)
    assert sorted(o.outcome for o in result.outcomes) == ["dead-lettered", "queued"]
    again = await from_queues(bus)
    # the route-stage letter is routed again (audit gets its copy again, both fail again);
    # the leg-stage one re-runs crm's steps only and fails again, same stage
    assert sorted((s[0], s[1], s[2], s[4]) for s in again) == sorted([
        (destination_address("audit"), "orders", "audit", None),
        (DEAD_LETTER, "checked", None, "route-transform"),
        (DEAD_LETTER, "orders", "crm", "destination-transform"),
        (DEAD_LETTER, "orders", "crm", "destination-transform")])

