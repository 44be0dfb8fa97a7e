"""Conformance table for the pattern language: every case runs against both the compiled
PatternIndex and the reference evaluator."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from esb.bus.routing.pattern_index import PatternIndex, reference_match

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "shop",
    "type": "order.created",
    "time": "2026-01-15T10:00:00Z",
    "datacontenttype": "application/json",
    "esbendpoint": "shop",
    "data": {
        "country": "DE",
        "total": 1200,
        "price": 19.5,
        "vip": True,
        "coupon": None,
        "note": "",
        "email": "Alice@Example.COM",
        "path": "/var/lib/app.png",
        "ip": "10.0.0.33",
        "ip6": "2001:db8::1",
        "tags": ["new", "priority"],
        "scores": [3, 7],
        "customer": {"id": "c-9", "tier": "gold", "address": {"city": "Berlin"}},
        "lines": [
            {"sku": "A", "qty": 1, "price": 10},
            {"sku": "B", "qty": 5, "gift": True},
        ],
        "matrix": [[{"k": "x"}], [{"k": "y", "v": 2}]],
        "empty": [],
        "star": "a*b",
    },
}

# (id, pattern, expected)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    # --- basics
    ("empty-pattern", {}, True),
    ("exact-type", {"type": ["order.created"]}, True),
    ("exact-type-miss", {"type": ["order.updated"]}, False),
    ("exact-any-of", {"type": ["x", "order.created"]}, True),
    ("and-fields", {"type": ["order.created"], "source": ["shop"]}, True),
    ("and-fields-one-fails", {"type": ["order.created"], "source": ["crm"]}, False),
    ("nested", {"data": {"country": ["DE"]}}, True),
    ("nested-deep", {"data": {"customer": {"address": {"city": ["Berlin"]}}}}, True),
    ("nested-deep-miss", {"data": {"customer": {"address": {"city": ["Paris"]}}}}, False),
    ("missing-field", {"data": {"nope": ["x"]}}, False),
    ("case-sensitive", {"data": {"country": ["de"]}}, False),
    ("empty-nested-object", {"data": {}}, True),
    # --- numbers, booleans, null, empty string
    ("number-exact", {"data": {"total": [1200]}}, True),
    ("number-int-float", {"data": {"total": [1200.0]}}, True),
    ("number-float", {"data": {"price": [19.5]}}, True),
    ("number-vs-string", {"data": {"total": ["1200"]}}, False),
    ("string-vs-number", {"data": {"country": [0]}}, False),
    ("bool-true", {"data": {"vip": [True]}}, True),
    ("bool-false", {"data": {"vip": [False]}}, False),
    ("bool-not-one", {"data": {"vip": [1]}}, False),
    ("number-not-bool", {"data": {"scores": [True]}}, False),
    ("null-matches-null", {"data": {"coupon": [None]}}, True),
    ("null-not-missing", {"data": {"absent": [None]}}, False),
    ("null-not-empty-string", {"data": {"note": [None]}}, False),
    ("empty-string", {"data": {"note": [""]}}, True),
    ("empty-string-not-null", {"data": {"coupon": [""]}}, False),
    # --- arrays in the event
    ("array-any-element", {"data": {"tags": ["priority"]}}, True),
    ("array-no-element", {"data": {"tags": ["old"]}}, False),
    ("array-numbers", {"data": {"scores": [7]}}, True),
    ("array-of-objects", {"data": {"lines": {"sku": ["B"]}}}, True),
    ("array-of-objects-miss", {"data": {"lines": {"sku": ["C"]}}}, False),
    ("array-same-element", {"data": {"lines": {"sku": ["B"], "qty": [5]}}}, True),
    ("array-consistency", {"data": {"lines": {"sku": ["A"], "qty": [5]}}}, False),
    ("array-consistency-numeric", {"data": {"lines": {"sku": ["B"], "price": [10]}}}, False),
    ("array-nested-arrays", {"data": {"matrix": {"k": ["y"], "v": [2]}}}, True),
    ("array-nested-consistency", {"data": {"matrix": {"k": ["x"], "v": [2]}}}, False),
    ("array-object-is-not-leaf", {"data": {"lines": [{"exists": True}]}}, False),
    ("array-empty-field", {"data": {"empty": ["x"]}}, False),
    # --- prefix / suffix / equals-ignore-case
    ("prefix", {"type": [{"prefix": "order."}]}, True),
    ("prefix-miss", {"type": [{"prefix": "Order."}]}, False),
    ("prefix-empty", {"type": [{"prefix": ""}]}, True),
    ("prefix-not-number", {"data": {"total": [{"prefix": "12"}]}}, False),
    ("prefix-ignore-case", {"type": [{"prefix": {"equals-ignore-case": "ORDER."}}]}, True),
    ("suffix", {"data": {"path": [{"suffix": ".png"}]}}, True),
    ("suffix-miss", {"data": {"path": [{"suffix": ".PNG"}]}}, False),
    ("suffix-ignore-case", {"data": {"path": [{"suffix": {"equals-ignore-case": ".PNG"}}]}}, True),
    (
        "equals-ignore-case",
        {"data": {"email": [{"equals-ignore-case": "alice@example.com"}]}},
        True,
    ),
    (
        "equals-ignore-case-miss",
        {"data": {"email": [{"equals-ignore-case": "bob@example.com"}]}},
        False,
    ),
    ("prefix-in-array", {"data": {"tags": [{"prefix": "pri"}]}}, True),
    # --- wildcard
    ("wildcard", {"type": [{"wildcard": "order.*"}]}, True),
    ("wildcard-middle", {"data": {"path": [{"wildcard": "/var/*.png"}]}}, True),
    ("wildcard-multi", {"data": {"path": [{"wildcard": "*lib*png"}]}}, True),
    ("wildcard-miss", {"data": {"path": [{"wildcard": "/usr/*"}]}}, False),
    ("wildcard-no-star-is-exact", {"type": [{"wildcard": "order.created"}]}, True),
    ("wildcard-escaped-star", {"data": {"star": [{"wildcard": "a\\*b"}]}}, True),
    ("wildcard-escaped-star-literal", {"data": {"star": [{"wildcard": "a\\*c"}]}}, False),
    ("wildcard-not-number", {"data": {"total": [{"wildcard": "1*"}]}}, False),
    # --- anything-but
    ("anything-but", {"data": {"country": [{"anything-but": "FR"}]}}, True),
    ("anything-but-miss", {"data": {"country": [{"anything-but": "DE"}]}}, False),
    ("anything-but-list", {"data": {"country": [{"anything-but": ["DE", "FR"]}]}}, False),
    ("anything-but-number", {"data": {"total": [{"anything-but": [100, 200]}]}}, True),
    ("anything-but-number-miss", {"data": {"total": [{"anything-but": 1200}]}}, False),
    ("anything-but-missing-field", {"data": {"nope": [{"anything-but": "x"}]}}, False),
    ("anything-but-array-any", {"data": {"tags": [{"anything-but": "new"}]}}, True),
    (
        "anything-but-array-all-excluded",
        {"data": {"tags": [{"anything-but": ["new", "priority"]}]}},
        False,
    ),
    ("anything-but-prefix", {"data": {"country": [{"anything-but": {"prefix": "F"}}]}}, True),
    ("anything-but-prefix-miss", {"data": {"country": [{"anything-but": {"prefix": "D"}}]}}, False),
    ("anything-but-suffix", {"data": {"path": [{"anything-but": {"suffix": ".png"}}]}}, False),
    (
        "anything-but-ignore-case",
        {"data": {"country": [{"anything-but": {"equals-ignore-case": "de"}}]}},
        False,
    ),
    (
        "anything-but-ignore-case-list",
        {"data": {"country": [{"anything-but": {"equals-ignore-case": ["fr", "it"]}}]}},
        True,
    ),
    (
        "anything-but-wildcard",
        {"data": {"path": [{"anything-but": {"wildcard": "*/lib/*"}}]}},
        False,
    ),
    ("anything-but-prefix-number", {"data": {"total": [{"anything-but": {"prefix": "x"}}]}}, False),
    ("anything-but-null-value", {"data": {"coupon": [{"anything-but": "x"}]}}, True),
    # --- numeric
    ("numeric-ge", {"data": {"total": [{"numeric": [">=", 1000]}]}}, True),
    ("numeric-gt-miss", {"data": {"total": [{"numeric": [">", 1200]}]}}, False),
    ("numeric-ge-edge", {"data": {"total": [{"numeric": [">=", 1200]}]}}, True),
    ("numeric-range", {"data": {"price": [{"numeric": [">", 0, "<=", 19.5]}]}}, True),
    ("numeric-range-miss", {"data": {"price": [{"numeric": [">", 0, "<", 19.5]}]}}, False),
    ("numeric-eq", {"data": {"total": [{"numeric": ["=", 1200.0]}]}}, True),
    ("numeric-lt", {"data": {"total": [{"numeric": ["<", 5]}]}}, False),
    ("numeric-not-string", {"data": {"country": [{"numeric": [">", 0]}]}}, False),
    ("numeric-not-bool", {"data": {"vip": [{"numeric": [">", 0]}]}}, False),
    ("numeric-array", {"data": {"scores": [{"numeric": [">", 5]}]}}, True),
    ("numeric-array-objects", {"data": {"lines": {"qty": [{"numeric": [">", 4]}]}}}, True),
    ("numeric-or-exact", {"data": {"total": [{"numeric": ["<", 0]}, 1200]}}, True),
    # --- exists
    ("exists-true", {"data": {"country": [{"exists": True}]}}, True),
    ("exists-true-missing", {"data": {"nope": [{"exists": True}]}}, False),
    ("exists-false-missing", {"data": {"nope": [{"exists": False}]}}, True),
    ("exists-false-present", {"data": {"country": [{"exists": False}]}}, False),
    ("exists-true-null", {"data": {"coupon": [{"exists": True}]}}, True),
    ("exists-true-object", {"data": {"customer": [{"exists": True}]}}, False),
    ("exists-false-object", {"data": {"customer": [{"exists": False}]}}, True),
    ("exists-false-empty-array", {"data": {"empty": [{"exists": False}]}}, True),
    ("exists-false-parent-missing", {"nope": {"deeper": [{"exists": False}]}}, True),
    ("exists-false-parent-scalar", {"type": {"deeper": [{"exists": False}]}}, True),
    ("exists-false-per-element", {"data": {"lines": {"gift": [{"exists": False}]}}}, True),
    (
        "exists-false-same-element",
        {"data": {"lines": {"sku": ["B"], "gift": [{"exists": False}]}}},
        False,
    ),
    (
        "exists-false-same-element-ok",
        {"data": {"lines": {"sku": ["A"], "gift": [{"exists": False}]}}},
        True,
    ),
    ("exists-false-or-value", {"data": {"country": [{"exists": False}, "DE"]}}, True),
    ("exists-and-other", {"type": ["order.created"], "data": {"nope": [{"exists": False}]}}, True),
    # --- cidr
    ("cidr-v4", {"data": {"ip": [{"cidr": "10.0.0.0/24"}]}}, True),
    ("cidr-v4-miss", {"data": {"ip": [{"cidr": "10.0.1.0/24"}]}}, False),
    ("cidr-v6", {"data": {"ip6": [{"cidr": "2001:db8::/32"}]}}, True),
    ("cidr-v6-vs-v4", {"data": {"ip": [{"cidr": "::/0"}]}}, False),
    ("cidr-not-ip", {"data": {"country": [{"cidr": "0.0.0.0/0"}]}}, False),
    # --- $or
    ("or-top", {"$or": [{"type": ["x"]}, {"source": ["shop"]}]}, True),
    ("or-top-none", {"$or": [{"type": ["x"]}, {"source": ["y"]}]}, False),
    (
        "or-with-sibling",
        {"type": ["order.created"], "$or": [{"source": ["y"]}, {"data": {"country": ["DE"]}}]},
        True,
    ),
    ("or-sibling-fails", {"type": ["x"], "$or": [{"source": ["shop"]}]}, False),
    (
        "or-nested",
        {"data": {"$or": [{"country": ["FR"]}, {"total": [{"numeric": [">", 1000]}]}]}},
        True,
    ),
    (
        "or-same-field-and",
        {"type": [{"prefix": "order"}], "$or": [{"type": [{"suffix": "created"}]}]},
        True,
    ),
    ("or-same-field-conflict", {"type": ["order.created"], "$or": [{"type": ["x"]}]}, False),
    (
        "or-merged-array-consistency",
        {"data": {"lines": {"sku": ["A"]}}, "$or": [{"data": {"lines": {"qty": [5]}}}]},
        False,
    ),
    (
        "or-merged-array-consistent",
        {"data": {"lines": {"sku": ["B"]}}, "$or": [{"data": {"lines": {"qty": [5]}}}]},
        True,
    ),
    (
        "or-inside-or",
        {"$or": [{"type": ["x"]}, {"$or": [{"source": ["z"]}, {"id": ["e-1"]}]}]},
        True,
    ),
    (
        "or-parallel",
        {
            "$or": [{"type": ["x"]}, {"source": ["shop"]}],
            "data": {"$or": [{"country": ["FR"]}, {"vip": [True]}]},
        },
        True,
    ),
    ("or-in-array-element", {"data": {"lines": {"$or": [{"sku": ["Z"]}, {"qty": [5]}]}}}, True),
]

XML = b"""<o:order xmlns:o="urn:shop" id="42">
  <o:country>DE</o:country><o:total> 1200 </o:total>
  <o:line sku="A"/><o:line sku="B"/><o:note/>
</o:order>"""
NS = {"o": "urn:shop"}
XML_EVENT = {**EVENT, "datacontenttype": "application/xml", "data": XML.decode()}

XML_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("xpath-node", {"data": {"$xpath": {"/o:order/o:country": ["DE", "FR"]}}}, True),
    ("xpath-top-level", {"$xpath": {"/o:order/o:country": ["DE"]}}, True),
    ("xpath-miss", {"$xpath": {"/o:order/o:country": ["FR"]}}, False),
    ("xpath-numeric-text", {"$xpath": {"/o:order/o:total": [{"numeric": [">=", 1000]}]}}, True),
    ("xpath-exact-number-text", {"$xpath": {"/o:order/o:total": [1200]}}, True),
    ("xpath-exact-string-text-blanks", {"$xpath": {"/o:order/o:total": ["1200"]}}, False),
    ("xpath-attribute", {"$xpath": {"/o:order/@id": ["42"]}}, True),
    ("xpath-attribute-number", {"$xpath": {"/o:order/@id": [42.0]}}, True),
    ("xpath-multi-nodes", {"$xpath": {"/o:order/o:line/@sku": ["B"]}}, True),
    ("xpath-count", {"$xpath": {"count(/o:order/o:line)": [2]}}, True),
    ("xpath-count-numeric", {"$xpath": {"count(/o:order/o:line)": [{"numeric": [">", 2]}]}}, False),
    ("xpath-boolean", {"$xpath": {"/o:order/o:total > 1000": [True]}}, True),
    ("xpath-string-fn", {"$xpath": {"string(/o:order/o:country)": [{"prefix": "D"}]}}, True),
    ("xpath-exists-false", {"$xpath": {"/o:order/o:missing": [{"exists": False}]}}, True),
    ("xpath-exists-false-present", {"$xpath": {"/o:order/o:note": [{"exists": False}]}}, False),
    ("xpath-exists-true-empty-element", {"$xpath": {"/o:order/o:note": [{"exists": True}]}}, True),
    (
        "xpath-and-json",
        {"type": ["order.created"], "data": {"$xpath": {"/o:order/o:country": ["DE"]}}},
        True,
    ),
    ("xpath-and-json-miss", {"type": ["x"], "$xpath": {"/o:order/o:country": ["DE"]}}, False),
    (
        "xpath-in-or",
        {
            "$or": [
                {"$xpath": {"/o:order/o:country": ["FR"]}},
                {"data": {"$xpath": {"/o:order/@id": ["42"]}}},
            ]
        },
        True,
    ),
    ("xpath-anything-but-number", {"$xpath": {"/o:order/@id": [{"anything-but": 42}]}}, False),
    ("json-field-on-xml-payload", {"data": {"country": ["DE"]}}, False),
]


def _ids(cases: list[tuple[str, dict[str, Any], bool]]) -> list[str]:
    return [c[0] for c in cases]


def test_table_size() -> None:
    assert len(CASES) + len(XML_CASES) >= 80
    assert len(set(_ids(CASES + XML_CASES))) == len(CASES) + len(XML_CASES)


@pytest.mark.parametrize(("name", "pattern", "expected"), CASES, ids=_ids(CASES))
def test_reference(name: str, pattern: dict[str, Any], expected: bool) -> None:
    assert reference_match(pattern, EVENT) is expected


@pytest.mark.parametrize(("name", "pattern", "expected"), CASES, ids=_ids(CASES))
def test_index_single(name: str, pattern: dict[str, Any], expected: bool) -> None:
    assert PatternIndex([pattern]).matches(EVENT) == ([0] if expected else [])


def test_index_all_at_once() -> None:
    """All patterns in one index: ids must come back exactly for the expected ones."""
    index = PatternIndex([c[1] for c in CASES])
    assert index.matches(EVENT) == [i for i, c in enumerate(CASES) if c[2]]
    assert not index.needs_xml


@pytest.mark.parametrize(("name", "pattern", "expected"), XML_CASES, ids=_ids(XML_CASES))
def test_xml_reference(name: str, pattern: dict[str, Any], expected: bool) -> None:
    root = etree.fromstring(XML)
    assert reference_match(pattern, XML_EVENT, root, NS) is expected


@pytest.mark.parametrize(("name", "pattern", "expected"), XML_CASES, ids=_ids(XML_CASES))
def test_xml_index(name: str, pattern: dict[str, Any], expected: bool) -> None:
    calls: list[int] = []

    def xml() -> etree._Element:
        calls.append(1)
        return etree.fromstring(XML)

    index = PatternIndex([pattern], NS)
    assert index.matches(XML_EVENT, xml) == ([0] if expected else [])
    assert len(calls) <= 1


def test_xml_all_at_once_parses_once() -> None:
    calls: list[int] = []

    def xml() -> etree._Element:
        calls.append(1)
        return etree.fromstring(XML)

    index = PatternIndex([c[1] for c in XML_CASES], NS)
    assert index.needs_xml
    assert index.matches(XML_EVENT, xml) == [i for i, c in enumerate(XML_CASES) if c[2]]
    assert calls == [1]


def test_xml_not_called_without_candidates() -> None:
    index = PatternIndex([{"type": ["x"], "$xpath": {"/a": ["1"]}}])

    def xml() -> etree._Element:
        raise AssertionError("xml() must not be called: no candidate needs XPath")

    assert index.matches(EVENT, xml) == []


def test_xml_none_means_xpath_does_not_match() -> None:
    patterns = [
        {"$xpath": {"/o:order/o:missing": [{"exists": False}]}},
        {"$xpath": {"/o:order": [{"exists": True}]}},
        {"type": ["order.created"]},
    ]
    index = PatternIndex(patterns, NS)
    assert index.matches(XML_EVENT, lambda: None) == [2]
    assert index.matches(XML_EVENT) == [2]
    assert not any(reference_match(p, XML_EVENT, None, NS) for p in patterns[:2])


def test_ids_are_positions_and_sorted() -> None:
    patterns = [{"type": ["x"]}, {"source": ["shop"]}, {}, {"type": ["order.created"]}]
    assert PatternIndex(patterns).matches(EVENT) == [1, 2, 3]
    assert PatternIndex([]).matches(EVENT) == []


def test_or_alternatives_report_pattern_once() -> None:
    index = PatternIndex([{"$or": [{"type": ["order.created"]}, {"source": ["shop"]}]}])
    assert index.matches(EVENT) == [0]


def test_dotted_keys_are_not_paths() -> None:
    event = {"a.b": "x", "a": {"c": "y"}}
    for pattern, expected in [({"a": {"b": ["x"]}}, False), ({"a.b": ["x"]}, True)]:
        assert reference_match(pattern, event) is expected
        assert PatternIndex([pattern]).matches(event) == ([0] if expected else [])
