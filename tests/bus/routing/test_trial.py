"""The route trial: one message, and the `tests:` cases carried in route files."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.bus.routing.plan import Plan
from esb.bus.routing.router import Router, compile_routes
from esb.bus.routing.routeset import RouteSet, parse_route_files
from esb.bus.routing.trial import (
    CaseResult,
    run_cases,
    same_data,
    test_routes,
    try_message,
)

ROUTES = """\
routes:
  - name: eu-orders-to-erp
    from: [shop]
    match:
      type: [order.created]
      data:
        country: [DE, FR, NL]
        total: [{numeric: [">=", 1000]}]
    to:
      - destination: erp
        transform:
          - json-to-xml: {root: order}
  - name: audit-all-orders
    from: [shop]
    match:
      type: [{prefix: order.}]
    to: [audit]
  - name: xml-needs-json
    match:
      type: [legacy.xml]
    to:
      - destination: erp
        transform: [json-to-xml]
tests:
  - name: big-eu-order
    source: shop
    message: {country: DE, total: 1200}
    type: order.created
    expect:
      destinations: [audit, erp]
      routes: [eu-orders-to-erp, audit-all-orders]
      outputs:
        erp: |
          <order>
            <country>DE</country>
            <total>1200</total>
          </order>
        audit: {country: DE, total: 1200}
  - name: small-order-from-file
    source: shop
    type: order.created
    message_file: samples/small.json
    expect:
      destinations: [audit]
      outputs:
        audit: {file: samples/small-expected.json}
  - name: wrong-expectation
    source: shop
    type: order.created
    message: {country: FR, total: 5000}
    expect:
      destinations: [erp]
      outputs:
        erp: "<order><country>FR</country><total>4000</total></order>"
  - name: not-from-shop
    source: elsewhere
    type: order.created
    message: {country: DE, total: 1200}
    expect: {unroutable: true}
  - name: typo-in-expect
    source: shop
    message: {}
    expect: {destination: [audit]}
"""


@pytest.fixture
def routes_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "routes"
    (folder / "samples").mkdir(parents=True)
    (folder / "orders.yaml").write_text(ROUTES)
    (folder / "samples" / "small.json").write_text('{"country": "DE", "total": 10}')
    (folder / "samples" / "small-expected.json").write_text('{"total": 10, "country": "DE"}\n')
    return folder


def line(text: str, after: str = "") -> int:
    """1-based line of the first line containing ``text`` (after the one containing ``after``)."""
    lines = ROUTES.splitlines()
    start = next(i for i, s in enumerate(lines) if after in s) if after else 0
    return next(i for i, s in enumerate(lines) if i >= start and text in s) + 1


def build(folder: Path) -> tuple[RouteSet, Router]:
    rs = parse_route_files({"orders.yaml": (folder / "orders.yaml").read_text()}, base=folder)
    router = compile_routes(rs, sources={"shop"}, destinations={"erp", "audit"},
                            base_dir=folder, version=7)
    return rs, router


def test_one_message_shows_each_destination_after_its_transforms(routes_dir: Path) -> None:
    _, router = build(routes_dir)
    trial = try_message(router, b'{"country": "NL", "total": 1000}', type="order.created",
                        source="shop", sources={"shop"}, name="order.json")
    assert isinstance(trial, Plan)
    assert trial.endpoint == "shop" and trial.version == 7 and not trial.unroutable
    assert trial.routes == ["eu-orders-to-erp", "audit-all-orders"]
    assert trial.destinations == ["audit", "erp"]
    (erp,) = trial.outputs("erp")
    assert erp.datacontenttype == "application/xml" and "<country>NL</country>" in erp.data
    assert erp.esbroute == "eu-orders-to-erp" and erp.esbrouteversion == 7
    (audit,) = trial.outputs("audit")
    assert audit.data == {"country": "NL", "total": 1000}
    as_dict = trial.to_dict()
    assert as_dict["deliveries"][1] == {"route": "audit-all-orders", "destination": "audit",
                                        "datacontenttype": "application/json",
                                        "data": {"country": "NL", "total": 1000}}


def test_source_that_is_not_an_endpoint_matches_no_from_route(routes_dir: Path) -> None:
    _, router = build(routes_dir)
    trial = test_routes(router, message=b'{"country": "DE", "total": 5000}',
                        type="order.created", source="somebody", sources={"shop"})
    assert isinstance(trial, Plan)
    assert trial.endpoint is None and trial.unroutable and trial.destinations == []


def test_a_transform_error_is_reported_as_a_dead_letter(routes_dir: Path) -> None:
    _, router = build(routes_dir)
    trial = try_message(router, b"<a>1</a>", type="legacy.xml", source="x",
                        content_type="application/xml")
    (dead,) = trial.dead_letters
    assert dead.destination == "erp" and "json-to-xml" in (dead.error or "")
    assert trial.destinations == []


def test_cases_pass_and_fail_with_file_line_and_a_diff(routes_dir: Path) -> None:
    rs, router = build(routes_dir)
    results = test_routes(router, route_set=rs, base=routes_dir, sources={"shop"})
    assert isinstance(results, list) and all(isinstance(r, CaseResult) for r in results)
    by_name = {r.name: r for r in results}
    assert list(by_name) == ["big-eu-order", "small-order-from-file", "wrong-expectation",
                             "not-from-shop", "typo-in-expect"]
    assert by_name["big-eu-order"].passed, by_name["big-eu-order"].failures
    assert by_name["small-order-from-file"].passed, by_name["small-order-from-file"].failures
    assert by_name["not-from-shop"].passed, by_name["not-from-shop"].failures
    where = str(routes_dir / "orders.yaml")
    wrong = by_name["wrong-expectation"]
    assert wrong.where == f"{where}:{line('name: wrong-expectation')}"
    assert len(wrong.failures) == 2
    dests, output = wrong.failures
    dline = line("destinations: [erp]", after="wrong-expectation")
    oline = line("erp: \"<order>", after="wrong-expectation")
    assert dests.startswith(f"{where}:{dline}: wrong-expectation: expected destinations ['erp'], "
                            "got ['audit', 'erp']")
    assert output.startswith(f"{where}:{oline}: wrong-expectation: erp would receive "
                             "different data")
    assert "-  <total>4000</total>" in output and "+  <total>5000</total>" in output
    (typo,) = by_name["typo-in-expect"].failures
    tline = line("expect: {destination", after="typo-in-expect")
    assert typo.startswith(f"{where}:{tline}: typo-in-expect: unknown expect key 'destination'")


def test_case_problems_are_failures_not_crashes(tmp_path: Path) -> None:
    text = """\
routes:
  - {name: r, match: {type: [t]}, to: [erp]}
tests:
  - {name: missing-file, type: t, message_file: nope.json}
  - {name: bad-endpoint, type: t, endpoint: nope, message: {}}
  - {name: no-output, type: t, message: {}, expect: {outputs: {audit: {}}}}
  - {name: bad-json, type: t, datacontenttype: application/json, message: "{"}
"""
    rs = parse_route_files({"r.yaml": text}, base=tmp_path)
    router = compile_routes(rs, sources={"shop"}, destinations={"erp", "audit"},
                            base_dir=tmp_path)
    results = run_cases(router, rs, base=tmp_path, sources={"shop"})
    failures = {r.name: r.failures for r in results}
    assert "no such file" in failures["missing-file"][0]
    assert failures["missing-file"][0].startswith(f"{tmp_path / 'r.yaml'}:4:")
    assert "unknown endpoint 'nope'" in failures["bad-endpoint"][0]
    assert "audit would receive nothing" in failures["no-output"][0]
    assert "not valid JSON" in failures["bad-json"][0]


@pytest.mark.parametrize(("actual", "expected", "same"), [
    ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
    ({"a": 1}, {"a": 2}, False),
    ("<a><b>1</b></a>", '<?xml version="1.0"?>\n<a>\n  <b>1</b>\n</a>\n', True),
    ("<a><b>1</b></a>", "<a><b>2</b></a>", False),
    ("hello\n", "hello", True),
    ('{"a": 1}', {"a": 1}, True),
])
def test_same_data(actual: object, expected: object, same: bool) -> None:
    assert same_data(actual, expected) is same


def test_an_inline_string_message_is_read_as_a_file_of_those_bytes(tmp_path: Path) -> None:
    text = """\
routes:
  - {name: j, match: {type: [t], data: {n: [1]}}, to: [erp]}
  - {name: x, match: {type: [t], datacontenttype: [application/xml]}, to: [audit]}
tests:
  - {name: json-text, type: t, message: '{"n": 1}', expect: {destinations: [erp]}}
  - {name: xml-text, type: t, message: '<n>1</n>', expect: {destinations: [audit]}}
  - {name: plain, type: t, message: 'n is 1', expect: {unroutable: true}}
"""
    rs = parse_route_files({"r.yaml": text}, base=tmp_path)
    router = compile_routes(rs, sources={"shop"}, destinations={"erp", "audit"},
                            base_dir=tmp_path)
    results = run_cases(router, rs, base=tmp_path, sources={"shop"})
    assert {r.name: r.failures for r in results} == {"json-text": [], "xml-text": [],
                                                      "plain": []}
