"""Matching work must not grow with the number of routes.

Nothing here is timed: :meth:`PatternIndex.work` counts the index probes (hash lookups,
range-index lists, absence checks), the alternatives checked in full and the XPath
expressions evaluated while matching one event, and each shape is compared at 10 and at
1,000 routes.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from lxml import etree

from esb.bus.routing.pattern_index import MatchWork, PatternIndex, reference_match

# A hundredfold more routes: work that grows with the route count (a scan, a list per route)
# would show as 100 times the checks or probes, so the counts prove the cost flat. Larger sets
# only make building the index slower (the bench measures matching at 10,000 routes).
SMALL, LARGE = 10, 1_000


def _event(**data: Any) -> dict[str, Any]:
    return {"type": "order.created", "source": "shop", "data": data}


def _work(patterns: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[MatchWork]:
    index = PatternIndex(patterns)
    return [index.work(ev) for ev in events]


def _band(i: int) -> dict[str, Any]:
    return {"data": {"total": [{"numeric": [">=", i, "<", i + 1]}]}}


def _band_events(n: int) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Values inside, on the edges of and outside n bands [i, i+1), with the bands hit."""
    half = n // 2
    cases: list[tuple[Any, list[int]]] = [
        (0, [0]),
        (half, [half]),
        (half + 0.5, [half]),
        (n - 1, [n - 1]),
        (n - 0.001, [n - 1]),
        (n, []),
        (-1, []),
        (math.nan, []),
        (math.inf, []),
        ("5", []),
        (True, []),
    ]
    return [_event(total=v) for v, _ in cases], [hits for _, hits in cases]


@pytest.mark.parametrize("shared_type", [False, True], ids=["ranges-only", "same-type"])
def test_numeric_bands_cost_the_same_for_10_and_1000_routes(shared_type: bool) -> None:
    """Routes told apart only by a numeric range: one bisect, one list, one check."""
    works: dict[int, list[MatchWork]] = {}
    for n in (SMALL, LARGE):
        patterns = [_band(i) for i in range(n)]
        if shared_type:  # a `type` all routes share must not become the anchor
            patterns = [{**p, "type": ["order.created"]} for p in patterns]
        events, expected = _band_events(n)
        works[n] = _work(patterns, events)
        assert [w.matched for w in works[n]] == expected
        for w, hits in zip(works[n], expected, strict=True):
            assert w.checked == len(hits)
            assert w.probes <= 2
    assert [w.probes for w in works[LARGE]] == [w.probes for w in works[SMALL]]


def test_nested_ranges_check_only_the_ranges_that_hold() -> None:
    """Thresholds `>= i` all overlap: the segment-tree layout keeps the probes logarithmic
    and every candidate it yields is a match (no range is tested one by one)."""
    for n in (SMALL, LARGE):
        index = PatternIndex([{"data": {"total": [{"numeric": [">=", i]}]}} for i in range(n)])
        for value in (0, n // 3 + 0.5, n + 7):
            work = index.work(_event(total=value))
            want = [i for i in range(n) if value >= i]
            assert work.matched == want
            assert work.checked == len(want)
            # eq probe + one list per tree level (2 * n endpoints + 1 regions)
            assert work.probes <= 2 + (2 * n + 1).bit_length()


def _host_events(n: int) -> tuple[list[dict[str, Any]], list[list[int]]]:
    half = n // 2
    cases: list[tuple[Any, list[int]]] = [
        (f"api-{half}.example", [half]),
        (f"eu.api-{n - 1}.example", [n - 1]),
        ("-0.example", [0]),
        (f"api-{n}.example", []),
        (f"api-{half}.example.org", []),
        ("api.example", []),
        (7, []),
    ]
    return [_event(host=v) for v, _ in cases], [hits for _, hits in cases]


def test_leading_star_wildcards_are_found_by_their_tail() -> None:
    """`*-<i>.example` routes: the literal tail is a suffix anchor, so only the route whose
    tail the value ends with is checked in full (probes: one per distinct tail length)."""
    for n in (SMALL, LARGE):
        patterns = [{"data": {"host": [{"wildcard": f"*-{i}.example"}]}} for i in range(n)]
        events, expected = _host_events(n)
        works = _work(patterns, events)
        assert [w.matched for w in works] == expected
        tail_lengths = len({len(f"-{i}.example") for i in range(n)})
        for w, hits in zip(works, expected, strict=True):
            assert w.checked == len(hits)
            assert w.probes <= 1 + tail_lengths


def test_inner_star_wildcards_keep_their_tail_semantics() -> None:
    """A tail anchor is only a necessary condition: the full glob still decides."""
    patterns = [{"data": {"host": [{"wildcard": f"*-{i}*.example"}]}} for i in range(LARGE)]
    index = PatternIndex(patterns)
    event = _event(host="api-42x.example")
    work = index.work(event)
    assert work.matched == [4, 42]
    # All share the tail ".example": they are candidates, checked by the glob itself.
    assert work.checked == LARGE
    assert [reference_match(patterns[i], event) for i in (4, 42, 43)] == [True, True, False]


def test_cidr_networks_are_bucketed_by_prefix_length() -> None:
    for n in (SMALL, LARGE):
        patterns = [
            {"data": {"ip": [{"cidr": f"10.{i // 256}.{i % 256}.0/24"}]}} for i in range(n)
        ]
        patterns.append({"data": {"ip": [{"cidr": "10.0.0.0/8"}]}})  # a second length
        index = PatternIndex(patterns)
        for ip, want in [
            ("10.0.7.9", [7, n]),
            (f"10.{(n - 1) // 256}.{(n - 1) % 256}.200", [n - 1, n]),
            ("11.0.7.9", []),
            ("2001:db8::1", []),
            ("not-an-ip", []),
        ]:
            work = index.work(_event(ip=ip))
            assert work.matched == want
            assert work.checked == len(want)
            assert work.probes <= 4  # eq probe, address parse, one per prefix length


def test_anything_but_and_exists_need_the_field_first() -> None:
    """anything-but and exists: true need a value at the path; exists: false needs none.
    Routes whose field the event lacks (or has) are never checked."""
    for n in (SMALL, LARGE):
        present = [{"data": {"channel": [{"anything-but": f"c{i}"}]}} for i in range(n)]
        present += [{"data": {"gift": [{"exists": True}]}}]
        absent = [{"data": {"coupon": [{"exists": False}]}}] * n
        index = PatternIndex(present + absent)
        without = index.work(_event(coupon="X10"))
        assert without.matched == [] and without.checked == 0
        assert without.probes <= 2
        both = index.work(_event(channel="c3", gift=1, coupon="X10"))
        assert both.matched == [i for i in range(n + 1) if i != 3]
        assert both.checked == n + 1


def test_absence_under_an_array_is_decided_per_element() -> None:
    """Flattened values merge array elements; an element without the field still counts."""
    patterns = [{"data": {"lines": {"gift": [{"exists": False}], "sku": [f"s{i}"]}}}
                for i in range(SMALL)]
    patterns.append({"data": {"lines": {"gift": [{"exists": False}]}}})
    index = PatternIndex(patterns)
    event = _event(lines=[{"sku": "s1", "gift": True}, {"sku": "s2"}])
    want = [i for i, p in enumerate(patterns) if reference_match(p, event)]
    assert want == [2, SMALL]
    assert index.matches(event) == want


# ------------------------------------------------------------------------- $xpath fields

NS = {"o": "urn:shop"}


def _order(sku: str | None = None, total: str | None = None, extra: str = "") -> str:
    parts = [f"<o:sku>{sku}</o:sku>" if sku is not None else ""]
    parts.append(f"<o:total>{total}</o:total>" if total is not None else "")
    return f"<o:order xmlns:o='urn:shop'>{''.join(parts)}{extra}</o:order>"


class _Payload:
    """The `xml` callback of a match: parses `text` and counts the calls."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.calls = 0

    def __call__(self) -> etree._Element | None:
        self.calls += 1
        return etree.fromstring(self.text) if self.text is not None else None


def _xml_event(kind: str = "order.created") -> dict[str, Any]:
    return {"type": kind, "source": "shop", "datacontenttype": "application/xml", "data": "…"}


def _sku_route(i: int) -> dict[str, Any]:
    return {"type": ["order.created"], "data": {"$xpath": {"/o:order/o:sku": [f"sku-{i}"]}}}


def _total_route(i: int) -> dict[str, Any]:
    band = [{"numeric": [">=", i, "<", i + 1]}]
    return {"type": ["order.created"], "$xpath": {"/o:order/o:total": band}}


def _xml_cases(shape: str, n: int) -> list[tuple[str, list[int]]]:
    """Payloads for routes told apart by an XPath value (or range) only, with the hits."""
    half = n // 2
    if shape == "value":
        return [
            (_order(sku=f"sku-{half}"), [half]),
            (_order(sku=f"sku-{n - 1}"), [n - 1]),
            (_order(sku="sku-0", extra="<o:sku>sku-1</o:sku>"), [0, 1]),
            (_order(sku=f"sku-{n}"), []),
            (_order(sku=f" sku-{half}"), []),
            (_order(total="3"), []),
        ]
    return [
        (_order(total="0"), [0]),
        (_order(total=f" {half}.5 "), [half]),
        (_order(total=f"{half}e0"), [half]),
        (_order(total=f"{n - 1}"), [n - 1]),
        (_order(total=f"{n}"), []),
        (_order(total="-1"), []),
        (_order(total="abc"), []),
        (_order(sku="sku-3"), []),
    ]


@pytest.mark.parametrize("shape", ["value", "range"])
def test_xpath_fields_cost_the_same_for_10_and_1000_routes(shape: str) -> None:
    """Routes sharing a `type` and told apart only by an `$xpath` value or numeric range:
    the expression is evaluated once, its values looked up in the field's index, and only
    the routes they hit are checked."""
    make = _sku_route if shape == "value" else _total_route
    probes: dict[int, list[int]] = {}
    for n in (SMALL, LARGE):
        patterns = [make(i) for i in range(n)]
        index = PatternIndex(patterns, NS)
        probes[n] = []
        for text, hits in _xml_cases(shape, n):
            payload = _Payload(text)
            work = index.work(_xml_event(), payload)
            assert work.matched == hits, text
            assert work.checked == len(hits)
            assert work.xpath_evals == 1  # one distinct expression among the candidates
            assert payload.calls == 1
            assert work.probes <= 5
            probes[n].append(work.probes)
            if n == SMALL:
                root = etree.fromstring(text)
                assert hits == [
                    i for i, p in enumerate(patterns) if reference_match(p, _xml_event(), root, NS)
                ]
    assert probes[LARGE] == probes[SMALL]


def test_xpath_fields_are_evaluated_only_when_a_route_needs_them() -> None:
    """Nothing is parsed when no route anchored on an XPath field passes its gate (the
    shared `type`), and each distinct expression is evaluated at most once."""
    patterns = [_sku_route(i) for i in range(LARGE)] + [_total_route(i) for i in range(LARGE)]
    index = PatternIndex(patterns, NS)
    other = _Payload(_order(sku="sku-5", total="5"))
    work = index.work(_xml_event("order.cancelled"), other)
    assert (work.matched, work.checked, work.xpath_evals, other.calls) == ([], 0, 0, 0)
    both = _Payload(_order(sku="sku-5", total="7.5"))
    work = index.work(_xml_event(), both)
    assert work.matched == [5, LARGE + 7]
    assert (work.checked, work.xpath_evals, both.calls) == (2, 2, 1)
    unparsable = _Payload(None)
    work = index.work(_xml_event(), unparsable)
    assert (work.matched, work.checked, work.xpath_evals, unparsable.calls) == ([], 0, 0, 1)


def test_xpath_conditions_of_json_anchored_routes_are_evaluated_once() -> None:
    """Routes anchored on a unique `type` evaluate their `$xpath` conditions only when they
    are candidates, each distinct expression once however many candidates use it."""
    exprs = [f"/o:order/o:f{k}" for k in range(5)]
    for n in (SMALL, LARGE):
        patterns = [
            {"type": [f"order.created.{i % 97}"], "$xpath": {exprs[i % 5]: [{"exists": True}]}}
            for i in range(n)
        ]
        index = PatternIndex(patterns, NS)
        payload = _Payload("<o:order xmlns:o='urn:shop'><o:f0/><o:f2/></o:order>")
        work = index.work(_xml_event("order.created.5"), payload)
        candidates = [i for i in range(n) if i % 97 == 5]
        assert work.checked == len(candidates)
        assert work.matched == [i for i in candidates if i % 5 in (0, 2)]
        assert work.xpath_evals == len({i % 5 for i in candidates})
        assert payload.calls == (1 if candidates else 0)
