"""The dispatch plan, unit by unit, with no bus: which routes fire, each chain and its notes,
the copies, the dead-letter records, a deferral, the unroutable record."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from esb.bus.deadletter import LEG_TRANSFORM, ROUTE_TRANSFORM, stage_of
from esb.bus.envelope import Envelope
from esb.bus.routing.dispatch import plan, plan_leg
from esb.bus.routing.plan import COPY, DEAD, DROPPED, UNROUTABLE
from esb.bus.routing.router import Router, compile_routes
from esb.bus.routing.routeset import parse_route_files

STEPS = """
from esb.bus.errors import DropEnvelope, TransientError

def tag(env):
    return {**env.data, "tagged": True}

def upper(env):
    return {k: (v.upper() if isinstance(v, str) else v) for k, v in env.data.items()}

def fail(env):
    raise ValueError("no customer")

def later(env):
    raise TransientError("lookup service down", retry_after=5)

def drop(env):
    raise DropEnvelope()

def where(env):
    if not isinstance(env.data, dict):
        return env.data
    return {**env.data, "seen": [env.esbroute, env.esbdestination]}
"""

DESTINATIONS = {"erp", "crm", "audit", "archive"}


@pytest.fixture
def steps(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "dispatch_steps.py").write_text(STEPS)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("dispatch_steps", None)


def router(base: Path, routes: str, version: int = 4) -> Router:
    return compile_routes(parse_route_files({"r.yaml": routes}, base=base),
                          sources={"shop", "crm"}, destinations=DESTINATIONS, base_dir=base,
                          version=version)


def order(**data: object) -> Envelope:
    return Envelope(source="shop", type="order", data={"country": "de", **data})


def test_fan_out_is_one_copy_per_destination_stamped_with_its_route(steps: Path) -> None:
    r = router(steps, """
routes:
  - name: orders
    from: [shop]
    to: [erp, audit]
""")
    env = order()
    p = plan(r, env, "shop", instance="i1")
    assert p.routes == ["orders"] and not p.unroutable and p.deferred is None
    assert [(o.kind, o.route, o.destination) for o in p.outcomes] == [
        (COPY, "orders", "erp"), (COPY, "orders", "audit")]
    for o in p.outcomes:
        out = o.envelope
        assert out is not None and out.id == env.id and out.data == env.data
        assert (out.esbendpoint, out.esbrouteversion, out.esbroute) == ("shop", 4, "orders")
        assert out.esbdestination == o.destination
        assert [h.step for h in out.esbhops] == ["accepted", "routed"]
        assert out.esbhops[1].detail == {"route": "orders", "destination": o.destination,
                                         "version": 4}
    assert p.notes == [("accepted", {"endpoint": "shop", "version": 4}),
                       ("routed", {"route": "orders", "version": 4, "destination": "erp"}),
                       ("routed", {"route": "orders", "version": 4, "destination": "audit"})]
    assert env.esbhops == []  # the envelope given is not touched


def test_priority_orders_and_an_exclusive_route_stops_the_rest(steps: Path) -> None:
    r = router(steps, """
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
""")
    assert plan(r, order(vip=True), "shop").routes == ["high", "vip"]
    assert plan(r, order(vip=False), "shop").routes == ["high", "low"]


def test_route_steps_run_once_and_leg_steps_per_destination(steps: Path) -> None:
    r = router(steps, """
routes:
  - name: orders
    from: [shop]
    transform: [dispatch_steps:tag]
    to:
      - destination: erp
        transform: [dispatch_steps:upper]
      - audit
""")
    p = plan(r, order(), "shop", instance="i1")
    erp, audit = p.outputs("erp")[0], p.outputs("audit")[0]
    assert erp.data == {"country": "DE", "tagged": True}
    assert audit.data == {"country": "de", "tagged": True}
    assert [(s, d.get("destination"), d.get("transform")) for s, d in p.notes
            if s == "transformed"] == [(
                "transformed", None, "dispatch_steps:tag"),
                ("transformed", "erp", "dispatch_steps:upper")]
    assert all(isinstance(d["duration_ms"], float) for s, d in p.notes if s == "transformed")
    assert [h.step for h in erp.esbhops] == ["accepted", "routed"]


def test_a_failing_route_step_dead_letters_that_route_only(steps: Path) -> None:
    r = router(steps, """
routes:
  - name: checked
    from: [shop]
    transform: [dispatch_steps:tag, dispatch_steps:fail]
    to: [erp, crm]
  - name: copy
    from: [shop]
    to: [archive]
""")
    env = order()
    p = plan(r, env, "shop", instance="i1")
    assert [(o.kind, o.route, o.destination) for o in p.outcomes] == [
        (DEAD, "checked", None), (COPY, "copy", "archive")]
    dead = p.dead_letters[0]
    record = dead.envelope
    assert record is not None and "dispatch_steps:fail" in (dead.error or "")
    assert record.data == env.data  # kept as it was before the route's chain
    assert (record.esbroute, record.esbdestination, record.esberror) == (
        "checked", None, dead.error)
    assert stage_of(record) == ROUTE_TRANSFORM
    assert record.esbhops[-1].detail["reason"] == dead.error
    assert [s for s, _ in p.notes] == ["accepted", "transformed", "transform-failed", "routed"]


def test_a_failing_leg_step_dead_letters_that_destination_only(steps: Path) -> None:
    r = router(steps, """
routes:
  - name: orders
    from: [shop]
    transform: [dispatch_steps:tag]
    to:
      - destination: erp
        transform: [dispatch_steps:fail]
      - audit
""")
    p = plan(r, order(), "shop", instance="i1")
    assert [(o.kind, o.destination) for o in p.outcomes] == [(DEAD, "erp"), (COPY, "audit")]
    record = p.dead_letters[0].envelope
    assert record is not None and stage_of(record) == LEG_TRANSFORM
    assert record.data == {"country": "de", "tagged": True}  # the route's steps applied
    assert (record.esbroute, record.esbdestination) == ("orders", "erp")
    assert p.destinations == ["audit"]


def test_a_transient_step_defers_the_whole_envelope(steps: Path) -> None:
    r = router(steps, """
routes:
  - name: first
    from: [shop]
    to: [archive]
  - name: enrich
    from: [shop]
    to:
      - destination: crm
        transform: [dispatch_steps:later]
""")
    p = plan(r, order(), "shop")
    assert p.deferred is not None
    assert (p.deferred.route, p.deferred.destination, p.deferred.step) == (
        "enrich", "crm", "dispatch_steps:later")
    assert p.deferred.error.retry_after == 5
    assert p.outcomes == [] and p.notes == []  # not even the copy planned before it


def test_a_drop_filters_one_copy(steps: Path) -> None:
    r = router(steps, """
routes:
  - name: orders
    from: [shop]
    to:
      - destination: erp
        transform: [dispatch_steps:drop]
      - audit
""")
    p = plan(r, order(), "shop")
    assert [(o.kind, o.destination) for o in p.outcomes] == [(DROPPED, "erp"), (COPY, "audit")]
    assert p.outcomes[0].envelope is None and p.outcomes[0].dropped


def test_unroutable_is_one_record_for_the_unroutable_queue(steps: Path) -> None:
    r = router(steps, """
routes:
  - name: orders
    from: [shop]
    to: [erp]
""", version=9)
    p = plan(r, order(), "crm", instance="i1")
    assert p.unroutable and p.routes == []
    ((o),) = p.outcomes
    assert o.kind == UNROUTABLE and o.envelope is not None
    assert o.envelope.esberror == "no route of version 9 matched"
    assert [h.step for h in o.envelope.esbhops] == ["accepted", "unroutable"]
    assert p.notes == [("accepted", {"endpoint": "crm", "version": 9}),
                       ("unroutable", {"version": 9})]


def test_plan_leg_reruns_one_destinations_steps_under_the_running_set(steps: Path) -> None:
    broken = router(steps, """
routes:
  - name: orders
    from: [shop]
    to:
      - destination: erp
        transform: [dispatch_steps:fail]
""", version=1)
    record = plan(broken, order(), "shop").dead_letters[0].envelope
    assert record is not None
    fixed = router(steps, """
routes:
  - name: orders
    from: [shop]
    to:
      - destination: erp
        transform: [dispatch_steps:upper]
""", version=2)
    p = plan_leg(fixed, record, "orders", "erp", instance="i1")
    ((copy),) = p.outcomes
    assert copy.kind == COPY and copy.envelope is not None
    assert copy.envelope.data == {"country": "DE"} and copy.envelope.esbrouteversion == 2
    assert copy.envelope.esbhops[-1].step == "routed"
    assert [s for s, _ in p.notes] == ["transformed", "routed"]
    again = plan_leg(broken, record, "orders", "erp")
    assert stage_of(again.dead_letters[0].envelope) == LEG_TRANSFORM  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="does not send to 'crm'"):
        plan_leg(fixed, record, "orders", "crm")


PER_DESTINATION = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:param name="esbroute"/><xsl:param name="esbdestination"/>
  <xsl:template match="/order">
    <order route="{$esbroute}" for="{$esbdestination}"><xsl:copy-of select="*"/></order>
  </xsl:template>
</xsl:stylesheet>
"""


def test_steps_see_their_route_and_destination(steps: Path) -> None:
    """esbroute/esbdestination are stamped before the steps run: a stylesheet formats per
    destination, a python step knows where it is."""
    (steps / "per-destination.xsl").write_text(PER_DESTINATION)
    r = router(steps, """
routes:
  - name: single
    from: [crm]
    transform: [dispatch_steps:where]
    to: [erp]
  - name: orders
    from: [shop]
    transform: [dispatch_steps:where]
    to:
      - destination: erp
        transform: [{xslt: per-destination.xsl}]
      - destination: audit
        transform: [dispatch_steps:where]
""")
    xml = Envelope(source="shop", type="order", datacontenttype="application/xml",
                   data="<order><n>1</n></order>")
    p = plan(r, xml, "shop")
    assert '<order route="orders" for="erp"><n>1</n></order>' in p.outputs("erp")[0].data
    p = plan(r, order(), "shop")
    # the route's own steps run once for both destinations: no destination yet
    assert p.outputs("audit")[0].data["seen"] == ["orders", "audit"]
    p = plan(r, order(), "crm")
    assert p.outputs("erp")[0].data["seen"] == ["single", "erp"]
