"""Property tests: the compiled PatternIndex agrees with the reference evaluator."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from esb.bus.routing.patterns import PatternIndex, reference_match, validate_pattern

KEYS = ["a", "b", "c"]
STRINGS = ["", "x", "xy", "xyz", "Xy", "yz", "a*b", "10.0.0.1", "10.1.2.3", "::1", "12"]
NUMBERS: list[Any] = [0, 1, 1.0, 2.5, -3, 12, 100]

scalar = st.one_of(
    st.sampled_from(STRINGS),
    st.sampled_from(NUMBERS),
    st.booleans(),
    st.none(),
)


def _event_value(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return scalar
    inner = _event_value(depth - 1)
    return st.one_of(
        scalar,
        st.lists(scalar, max_size=3),
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
