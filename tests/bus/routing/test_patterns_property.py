"""Property tests: the compiled PatternIndex agrees with the reference evaluator."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from esb.bus.routing.pattern_compile import NumKey, RangeIndex, compile_leaf
from esb.bus.routing.pattern_index import PatternIndex, reference_match, validate_pattern

KEYS = ["a", "b", "c"]
STRINGS = ["", "x", "xy", "xyz", "Xy", "yz", "a*b", "10.0.0.1", "10.1.2.3", "::1", "12"]
NUMBERS: list[Any] = [0, 1, 1.0, 2.5, -3, 12, 100]

scalar = st.one_of(
    st.sampled_from(STRINGS),
    st.sampled_from(NUMBERS),
    st.booleans(),
    st.none(),
)


# Events may carry numbers no pattern can name (JSON parsers accept NaN and Infinity).
event_scalar = st.one_of(scalar, st.sampled_from([math.nan, math.inf, -math.inf]))


def _event_value(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return event_scalar
    inner = _event_value(depth - 1)
    return st.one_of(
        event_scalar,
        st.lists(event_scalar, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
        st.lists(st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_size=3),
    )


events = st.dictionaries(st.sampled_from(KEYS), _event_value(2), max_size=3)

string_arg = st.sampled_from(STRINGS)
ignore_case_arg = st.builds(lambda s: {"equals-ignore-case": s}, string_arg)
wildcards = st.sampled_from(["*", "x*", "*z", "x*z", "a\\*b", "*y*", "xy"])


@st.composite
def numeric_spec(draw: st.DrawFn) -> list[Any]:
    lo, hi = sorted(draw(st.lists(st.sampled_from(NUMBERS), min_size=2, max_size=2, unique=True)))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return [draw(st.sampled_from([">", ">=", "<", "<=", "="])), draw(st.sampled_from(NUMBERS))]
    if lo == hi:
        return ["=", lo]
    return [draw(st.sampled_from([">", ">="])), lo, draw(st.sampled_from(["<", "<="])), hi]


operator = st.one_of(
    st.builds(lambda a: {"prefix": a}, st.one_of(string_arg, ignore_case_arg)),
    st.builds(lambda a: {"suffix": a}, st.one_of(string_arg, ignore_case_arg)),
    st.builds(lambda a: {"equals-ignore-case": a}, string_arg),
    st.builds(lambda a: {"wildcard": a}, wildcards),
    st.builds(
        lambda a: {"anything-but": a},
        st.one_of(
            string_arg,
            st.sampled_from(NUMBERS),
            st.lists(st.one_of(string_arg, st.sampled_from(NUMBERS)), min_size=1, max_size=3),
            st.builds(lambda s: {"prefix": s}, string_arg),
            st.builds(lambda s: {"suffix": s}, string_arg),
            st.builds(lambda s: {"equals-ignore-case": s}, string_arg),
            st.builds(lambda s: {"wildcard": s}, wildcards),
        ),
    ),
    st.builds(lambda a: {"numeric": a}, numeric_spec()),
    st.builds(lambda a: {"exists": a}, st.booleans()),
    st.builds(lambda a: {"cidr": a}, st.sampled_from(["10.0.0.0/8", "10.0.0.0/24", "::/64"])),
)

leaf = st.lists(st.one_of(scalar, operator), min_size=1, max_size=3)


def _pattern(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    value: st.SearchStrategy[Any] = leaf
    if depth > 0:
        value = st.one_of(leaf, leaf, _pattern(depth - 1))
    fields = st.dictionaries(st.sampled_from(KEYS), value, max_size=3)
    if depth == 0:
        return fields
    ors = st.lists(_pattern(depth - 1).filter(bool), min_size=1, max_size=2)
    return st.one_of(
        fields,
        st.builds(lambda f, o: {**f, "$or": o}, fields, ors),
    )


patterns = _pattern(2)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(patterns, min_size=1, max_size=8), st.lists(events, min_size=1, max_size=4))
def test_index_agrees_with_reference(pats: list[dict[str, Any]], evs: list[dict[str, Any]]) -> None:
    for p in pats:
        assert validate_pattern(p) == [], p
    index = PatternIndex(pats)
    for ev in evs:
        expected = [i for i, p in enumerate(pats) if reference_match(p, ev)]
        assert index.matches(ev) == expected, (pats, ev)


@settings(max_examples=300, deadline=None)
@given(patterns, events)
def test_single_pattern_index_agrees(pattern: dict[str, Any], event: dict[str, Any]) -> None:
    got = PatternIndex([pattern]).matches(event)
    assert got == ([0] if reference_match(pattern, event) else [])


XML_DOCS = [
    "<r><a>x</a><a>12</a><b k='xy'>1</b></r>",
    "<r><b k='10.0.0.1'> 2.5 </b><c/></r>",
    "<r/>",
]
XPATHS = ["/r/a", "/r/b/@k", "/r/b", "count(/r/a)", "string(/r/b)", "/r/c", "boolean(/r/a)"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(XPATHS), leaf, min_size=1, max_size=2).map(
            lambda x: {"$xpath": x}
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([*XML_DOCS, None]),
)
def test_xpath_index_agrees(pats: list[dict[str, Any]], doc: str | None) -> None:
    root = etree.fromstring(doc) if doc is not None else None
    index = PatternIndex(pats)
    event = {"type": "t", "data": doc or "not xml"}
    expected = [i for i, p in enumerate(pats) if reference_match(p, event, root)]
    assert index.matches(event, lambda: root) == expected


xpath_route = st.fixed_dictionaries(
    {"$xpath": st.dictionaries(st.sampled_from(XPATHS), leaf, min_size=1, max_size=2)},
    optional={"type": st.lists(st.sampled_from(["t", "u", "v"]), min_size=1, max_size=2)},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(xpath_route, min_size=1, max_size=40),
    st.sampled_from(["t", "u", "w"]),
    st.sampled_from([*XML_DOCS, None]),
)
def test_xpath_routes_sharing_types_agree(
    pats: list[dict[str, Any]], kind: str, doc: str | None
) -> None:
    """Many routes on a few `type`s and XPath fields: the XPath anchors and their gates give
    the reference's answer, parse at most once, and evaluate only the expressions of routes
    whose `type` holds, each once."""
    root = etree.fromstring(doc) if doc is not None else None
    event = {"type": kind, "data": doc or "not xml"}
    calls: list[int] = []

    def xml() -> etree._Element | None:
        calls.append(1)
        return root

    work = PatternIndex(pats).work(event, xml)
    assert work.matched == [i for i, p in enumerate(pats) if reference_match(p, event, root)]
    needed = {e for p in pats if kind in p.get("type", [kind]) for e in p["$xpath"]}
    assert work.xpath_evals <= (len(needed) if root is not None else 0)
    assert len(calls) <= (1 if needed else 0)


# ---------------------------------------------------------------- many routes on few fields
# Route sets of many patterns that differ only by numeric ranges, globs (leading `*` ones
# included), CIDR networks, anything-but and exists, so the range index, the suffix index of
# glob tails, the CIDR buckets and the presence/absence anchors each hold many entries.

BOUNDS: list[Any] = [-5, -1, 0, 0.5, 1, 2, 2.5, 3, 10, 99.5, 100, 1000]
PROBES: list[Any] = [*BOUNDS, -7, 0.25, 1.5, 2.75, 50, 5000, 1.0, 2.0]
PROBES += [math.inf, -math.inf, math.nan]
GLOBS = [
    "*-1.example", "*-2.example", "*1.example", "*.example", "*x", "*", "*a*", "*-1.ex*ple",
    "api*", "api-*.example", "a\\*b*", "*\\*b", "*\\\\", "x*y*z",
]
HOSTS = [
    "api-1.example", "api-2.example", "api-11.example", "x.example", "a*b", "xyz", "x", "",
    "api-1.exaaample", "*b", "a\\", "API-1.EXAMPLE",
]
NETS = [
    "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.0/23", "10.1.2.3/32", "0.0.0.0/0",
    "::/0", "2001:db8::/32", "2001:db8::1/128",
]
IPS = ["10.1.2.3", "10.1.3.9", "10.200.0.1", "192.168.0.1", "2001:db8::1", "2001:db9::", "::"]
MANY_KEYS = ["n", "h", "ip"]


@st.composite
def range_spec(draw: st.DrawFn) -> list[Any]:
    if draw(st.booleans()):
        return [draw(st.sampled_from([">", ">=", "<", "<=", "="])), draw(st.sampled_from(BOUNDS))]
    lo, hi = sorted(draw(st.lists(st.sampled_from(BOUNDS), min_size=2, max_size=2, unique=True)))
    return [draw(st.sampled_from([">", ">="])), lo, draw(st.sampled_from(["<", "<="])), hi]


many_element = st.one_of(
    st.builds(lambda a: {"numeric": a}, range_spec()),
    st.builds(lambda a: {"numeric": a}, range_spec()),
    st.builds(lambda g: {"wildcard": g}, st.sampled_from(GLOBS)),
    st.builds(lambda g: {"wildcard": g}, st.sampled_from(GLOBS)),
    st.builds(lambda n: {"cidr": n}, st.sampled_from(NETS)),
    st.builds(lambda a: {"anything-but": a}, st.sampled_from([1, "x", [0, 2.5]])),
    st.builds(lambda g: {"anything-but": {"wildcard": g}}, st.sampled_from(GLOBS)),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.sampled_from([*BOUNDS[:4], *HOSTS[:3], IPS[0]]),
)
many_leaf = st.lists(many_element, min_size=1, max_size=2)
many_route = st.fixed_dictionaries(
    {"data": st.dictionaries(st.sampled_from(MANY_KEYS), many_leaf, min_size=1, max_size=2)},
    optional={"type": st.just(["t"])},
)
many_value = st.one_of(
    st.sampled_from(PROBES), st.sampled_from(HOSTS), st.sampled_from(IPS), st.none()
)
many_object = st.dictionaries(
    st.sampled_from(MANY_KEYS), st.one_of(many_value, st.lists(many_value, max_size=2)), max_size=3
)
many_event = st.fixed_dictionaries(
    {"type": st.sampled_from(["t", "u"]), "data": st.one_of(many_object, st.lists(many_object))}
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(many_route, min_size=20, max_size=120), st.lists(many_event, min_size=1, max_size=5)
)
def test_many_routes_on_few_fields_agree(
    pats: list[dict[str, Any]], evs: list[dict[str, Any]]
) -> None:
    pats = [p for p in pats if not validate_pattern(p)]  # e.g. a glob with '**' once joined
    index = PatternIndex(pats)
    for ev in evs:
        expected = [i for i, p in enumerate(pats) if reference_match(p, ev)]
        assert index.matches(ev) == expected, (pats, ev)


def _ranges(specs: list[list[Any]]) -> list[tuple[NumKey, int]]:
    out: list[tuple[NumKey, int]] = []
    for rid, spec in enumerate(specs):
        entries = compile_leaf([{"numeric": spec}])[2]
        assert entries is not None
        ((kind, key),) = entries
        if kind == "num":
            out.append((key, rid))
    return out


def _holds(key: NumKey, v: float) -> bool:
    lo, lo_incl, hi, hi_incl = key
    return (v > lo or (lo_incl and v == lo)) and (v < hi or (hi_incl and v == hi))


@settings(max_examples=300, deadline=None)
@given(st.lists(range_spec(), max_size=40), st.lists(st.sampled_from(PROBES), min_size=1))
def test_range_index_layouts_agree(specs: list[list[Any]], values: list[float]) -> None:
    """Per-region lists and the segment tree both yield exactly the ranges holding a value."""
    ranges = _ranges(specs)
    flat = RangeIndex(ranges, flat_limit=10**9)
    tree = RangeIndex(ranges, flat_limit=0)
    assert flat.flat
    for v in values:
        want = {rid for key, rid in ranges if _holds(key, v)}
        got_flat: set[int] = set()
        got_tree: set[int] = set()
        flat.lookup(v, got_flat)
        tree.lookup(v, got_tree)
        assert got_flat == want, (ranges, v)
        assert got_tree == want, (ranges, v)
