"""The content enricher in the dispatch plan, with no bus: what it asks, how an answer is
merged (jmespath, XSLT), routing on the enriched envelope, each failure policy, offline test
cases with recorded answers, and configuration errors with file:line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from esb.bus.deadletter import ROUTE_TRANSFORM, stage_of
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError
from esb.bus.reply import failure_envelope
from esb.bus.routing.dispatch import plan
from esb.bus.routing.plan import Plan
from esb.bus.routing.router import Router, compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.routing.trial import recorded_answer, route_envelope, run_cases

DESTINATIONS = {"erp", "gold-desk", "orders", "archive"}

TIER_ROUTES = """
routes:
  - name: customer-tier
    priority: 10
    match: {type: [order.created]}
    enrich:
      destination: erp
      request: [{jmespath: "{id: customer}"}]
      merge: [{jmespath: "merge(message, {tier: reply.tier})"}]
  - name: gold-orders
    exclusive: true
    match: {type: [order.created], data: {tier: [gold]}}
    to: [gold-desk]
  - name: all-orders
    match: {type: [order.created]}
    to: [orders]
"""


def router(base: Path, routes: str, files: dict[str, str] | None = None) -> Router:
    for name, text in (files or {}).items():
        (base / name).write_text(text)
    return compile_routes(parse_route_files({"r.yaml": routes}, base=base),
                          sources={"shop"}, destinations=DESTINATIONS, base_dir=base,
                          version=3)


def order(**data: object) -> Envelope:
    return Envelope(source="shop", type="order.created", datacontenttype="application/json",
                    data=data)


def json_answer(value: object) -> tuple[bytes, str]:
    return orjson.dumps(value), "application/json"


def answered(r: Router, env: Envelope, answer: Envelope) -> Plan:
    """The plan once the enricher's (one) request is answered with ``answer``."""
    first = plan(r, env, "shop")
    assert len(first.pending) == 1
    return plan(r, env, "shop", answers={first.pending[0].key: answer})


def test_the_plan_names_the_request_it_needs_and_plans_nothing_else(tmp_path: Path) -> None:
    r = router(tmp_path, TIER_ROUTES)
    p = plan(r, order(customer=7, total=5), "shop")
    assert [c.route for c in p.pending] == ["customer-tier"]
    call = p.pending[0]
    assert call.enricher.destination == "erp"
    assert call.request.data == {"id": 7}
    assert call.request.esbdestination == "erp" and call.request.esbroute == "customer-tier"
    assert call.key == f"{p.envelope.id}.enrich.customer-tier"
    assert p.outcomes == [] and p.copies == []
    assert p.to_dict()["enrich"] == [{"route": "customer-tier", "destination": "erp",
                                      "datacontenttype": "application/json",
                                      "data": {"id": 7}}]


@pytest.mark.parametrize(("tier", "destination", "route"), [
    ("gold", "gold-desk", "gold-orders"), ("silver", "orders", "all-orders")])
def test_routes_after_an_enricher_match_the_enriched_envelope(
        tmp_path: Path, tier: str, destination: str, route: str) -> None:
    r = router(tmp_path, TIER_ROUTES)
    p = route_envelope(r, order(customer=7, total=5), "shop",
                       {"erp": json_answer({"tier": tier, "name": "Ada"})})
    assert not p.pending
    assert p.routes == ["customer-tier", route]
    assert p.destinations == [destination]
    (copy,) = p.copies
    assert copy.envelope is not None
    assert copy.envelope.data == {"customer": 7, "total": 5, "tier": tier}
    assert ("enriched", {"route": "customer-tier", "destination": "erp",
                         "request": p.envelope.id + ".enrich.customer-tier"}) in p.notes


def test_an_enricher_with_destinations_sends_the_enriched_envelope(tmp_path: Path) -> None:
    r = router(tmp_path, """
routes:
  - name: with-name
    enrich:
      destination: erp
      merge: [{jmespath: "merge(message, {name: reply.name})"}]
    transform: [{jmespath: "{customer: customer, name: name}"}]
    to: [archive, orders]
""")
    p = route_envelope(r, order(customer=7), "shop", {"erp": json_answer({"name": "Ada"})})
    assert p.pending == [] and p.destinations == ["archive", "orders"]
    assert [c.envelope.data for c in p.copies if c.envelope] == [
        {"customer": 7, "name": "Ada"}] * 2


def test_an_xml_message_is_merged_with_an_xml_answer_by_xslt(tmp_path: Path) -> None:
    merge_xsl = """<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/enrichment">
    <order tier="{reply/customer/tier}"><xsl:copy-of select="message/order/*"/></order>
  </xsl:template>
</xsl:stylesheet>"""
    r = router(tmp_path, """
routes:
  - name: xml-tier
    enrich:
      destination: erp
      merge: [{xslt: merge.xsl}]
    to: [orders]
""", {"merge.xsl": merge_xsl})
    env = Envelope(source="shop", type="order.created", datacontenttype="application/xml",
                   data="<order><id>9</id></order>")
    p = route_envelope(r, env, "shop", {
        "erp": (b"<customer><tier>gold</tier></customer>", "application/xml")})
    (copy,) = p.copies
    assert copy.envelope is not None
    assert copy.envelope.data.replace('<?xml version="1.0"?>\n', "").strip() == \
        '<order tier="gold"><id>9</id></order>'


def test_the_reply_steps_turn_the_answer_before_the_merge(tmp_path: Path) -> None:
    r = router(tmp_path, """
routes:
  - name: soap-tier
    enrich:
      destination: erp
      reply: [{xml-to-json: {strip_namespaces: true}}, {jmespath: "customer"}]
      merge: [{jmespath: "merge(message, {tier: reply.tier})"}]
    to: [orders]
""")
    p = route_envelope(r, order(customer=7), "shop", {
        "erp": (b"<customer><tier>gold</tier></customer>", "text/xml")})
    assert [c.envelope.data for c in p.copies if c.envelope] == [{"customer": 7,
                                                                   "tier": "gold"}]


@pytest.mark.parametrize(("kind", "status"), [
    ("backend", 502), ("timeout", 504), ("unavailable", 503), ("interrupted", 502)])
def test_a_failure_that_may_pass_asks_the_sender_to_retry(
        tmp_path: Path, kind: str, status: int) -> None:
    r = router(tmp_path, TIER_ROUTES)
    env = order(customer=7)
    p = answered(r, env, failure_envelope(env, kind, "it went wrong", status,
                                          destination="erp", retry_after=7))
    assert p.deferred is not None
    assert p.deferred.route == "customer-tier" and p.deferred.step == "enrich erp"
    assert p.deferred.error.retry_after == 7
    assert "it went wrong" in str(p.deferred.error)
    assert p.outcomes == []


@pytest.mark.parametrize(("kind", "status"), [
    ("not-found", 404), ("rejected", 422), ("too-large", 502), ("unanswerable", 502),
    ("transform", 502)])
def test_a_failure_that_will_not_pass_dead_letters_and_routes_nothing_after(
        tmp_path: Path, kind: str, status: int) -> None:
    r = router(tmp_path, TIER_ROUTES)
    env = order(customer=7)
    p = answered(r, env, failure_envelope(env, kind, "no customer 7", status,
                                          destination="erp"))
    assert p.deferred is None
    (dead,) = p.dead_letters
    assert dead.route == "customer-tier" and dead.step == "enrich erp"
    assert f"answered {status} ({kind}): no customer 7" in (dead.error or "")
    assert dead.envelope is not None and stage_of(dead.envelope) == ROUTE_TRANSFORM
    assert dead.envelope.data == {"customer": 7}  # as received: a replay asks again
    assert p.copies == [] and not p.unroutable  # the routes after it depended on it


def test_on_failure_continue_goes_on_without_the_answer(tmp_path: Path) -> None:
    r = router(tmp_path, TIER_ROUTES.replace("      destination: erp\n",
                                             "      destination: erp\n"
                                             "      on_failure: continue\n"))
    env = order(customer=7)
    p = answered(r, env, failure_envelope(env, "timeout", "no answer within 5s", 504,
                                          destination="erp"))
    assert p.deferred is None and p.dead_letters == []
    assert p.destinations == ["orders"]
    assert [c.envelope.data for c in p.copies if c.envelope] == [{"customer": 7}]
    assert ("enrich-failed", {"route": "customer-tier", "destination": "erp",
                              "error": "no answer within 5s", "continued": True}) in p.notes


def test_an_answer_the_merge_cannot_take_is_dead_lettered_naming_the_step(
        tmp_path: Path) -> None:
    r = router(tmp_path, TIER_ROUTES)
    env = order(customer=7)
    call = plan(r, env, "shop").pending[0]
    xml = recorded_answer(call, b"<customer><tier>gold</tier></customer>", "application/xml")
    p = plan(r, env, "shop", answers={call.key: xml})
    (dead,) = p.dead_letters
    assert dead.step == "enrich erp"
    assert "convert the answer first" in (dead.error or "")


def test_nothing_left_to_route_after_an_enricher_is_unroutable(tmp_path: Path) -> None:
    r = router(tmp_path, """
routes:
  - name: only-enriches
    enrich: {destination: erp, merge: [{jmespath: "merge(message, reply)"}]}
""")
    p = route_envelope(r, order(customer=7), "shop", {"erp": json_answer({"tier": "x"})})
    assert p.unroutable and p.copies == []
    (record,) = [o for o in p.outcomes if o.kind == "unroutable"]
    assert record.envelope is not None and record.envelope.data == {"customer": 7,
                                                                    "tier": "x"}


def test_route_cases_answer_enrichers_from_recorded_answers(tmp_path: Path) -> None:
    (tmp_path / "gold.json").write_text('{"tier": "gold"}')
    routes = TIER_ROUTES + """
tests:
  - name: gold-goes-to-the-desk
    source: shop
    type: order.created
    message: {customer: 7}
    answers: {erp: {file: gold.json}}
    expect:
      destinations: [gold-desk]
      outputs: {gold-desk: {customer: 7, tier: gold}}
  - name: inline-silver
    source: shop
    type: order.created
    message: {customer: 8}
    answers: {customer-tier: {tier: silver}}
    expect: {destinations: [orders]}
  - name: unanswered
    source: shop
    type: order.created
    message: {customer: 9}
    expect: {destinations: [orders]}
"""
    rs = parse_route_files({"r.yaml": routes}, base=tmp_path)
    r = compile_routes(rs, sources={"shop"}, destinations=DESTINATIONS, base_dir=tmp_path)
    results = {c.name: c for c in run_cases(r, rs, base=tmp_path, sources={"shop"})}
    assert results["gold-goes-to-the-desk"].passed, results["gold-goes-to-the-desk"].failures
    assert results["inline-silver"].passed, results["inline-silver"].failures
    failures = results["unanswered"].failures
    assert any("would ask erp (enrich); give its answer under answers: erp" in f
               for f in failures), failures


def problems_of(base: Path, routes: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        router(base, routes)
    return exc.value.problems


def test_a_bad_jmespath_in_an_enricher_is_reported_with_file_and_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
routes:
  - name: broken
    enrich:
      destination: erp
      request:
        - jmespath: "{id: customer"
      merge:
        - jmespath: "merge(message, {tier: reply.tier})"
    to: [orders]
""")
    assert len(problems) == 1, problems
    assert problems[0].startswith(str(tmp_path / "r.yaml") + ":7: broken: enrich.request[0]")


def test_an_unknown_enrich_destination_is_reported_with_file_and_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
routes:
  - name: typo
    enrich: {destination: erpp, merge: [{jmespath: "message"}]}
    to: [orders]
""")
    assert problems == [f"{tmp_path / 'r.yaml'}:4: typo: enrich: unknown destination 'erpp'. "
                        "Did you mean 'erp'? (configured: archive, erp, gold-desk, orders)"]


@pytest.mark.parametrize(("route", "says"), [
    ("{name: x, match: {}}", "a route needs 'to' (or 'enrich'"),
    ("{name: x, enrich: {destination: erp}, to: [orders]}", "merge"),
    ("{name: x, enrich: {destination: erp, merge: [m], on_failure: skip}, to: [orders]}",
     "on_failure"),
    ("{name: x, enrich: {destination: erp, merge: [m]}, transform: [t]}",
     "a route without 'to' only enriches"),
    ("{name: x, reply: {cache: {ttl: 1m, key: 'data..id'}}, to: [orders]}",
     "is not a field path"),
])
def test_enricher_schema_errors_carry_file_and_line(tmp_path: Path, route: str,
                                                    says: str) -> None:
    problems = problems_of(tmp_path, f"routes:\n  - {route}\n")
    assert any(p.startswith(str(tmp_path / "r.yaml") + ":2: ") and says in p
               for p in problems), problems
