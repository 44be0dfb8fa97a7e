"""Property tests: the compiled PatternIndex agrees with the reference evaluator."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

from esbtest.strength import examples
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
wildcards = st.sampled_from(["*", "x*", "*z", "x*z", "a\\*b", "*y*", "xy"])


# Hypothesis's own work per choice costs far more than the index does with an example, so an
# operator is drawn as two or three choices (a branch, then one of its finitely many
# arguments), not piece by piece in a composite.
ONE_SIDED_OPS = (">", ">=", "<", "<=", "=")


def one_bound(values: list[Any]) -> list[tuple[Any, ...]]:
    """Every one-sided numeric range (or equality) on one of `values`."""
    return [(op, v) for op in ONE_SIDED_OPS for v in values]


def two_bounds(values: list[Any]) -> list[tuple[Any, ...]]:
    """Every two-sided numeric range over two different `values`, lower bound first."""
    pairs = [sorted(p) for p in itertools.combinations(values, 2) if p[0] != p[1]]
    return [(low, lo, high, hi) for lo, hi in pairs for low in (">", ">=") for high in ("<", "<=")]


def _numeric(spec: Sequence[Any]) -> dict[str, Any]:
    return {"numeric": list(spec)}


#: An affix argument: a string, or {"equals-ignore-case": string} (half of them each).
_AFFIX_ARGS = [(s, ignore_case) for ignore_case in (False, True) for s in STRINGS]


def _affix(op: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(_AFFIX_ARGS).map(
        lambda a: {op: {"equals-ignore-case": a[0]} if a[1] else a[0]})


# One bound a third of the time, two the rest.
numeric_operator = st.one_of(st.sampled_from(one_bound(NUMBERS)).map(_numeric),
                             st.sampled_from(two_bounds(NUMBERS)).map(_numeric),
                             st.sampled_from(two_bounds(NUMBERS)).map(_numeric))

operator = st.one_of(
    _affix("prefix"),
    _affix("suffix"),
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
    numeric_operator,
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


_ABSENT: Any = object()


def witnesses(pattern: dict[str, Any]) -> list[dict[str, Any]]:
    """Events made of a pattern's own values: one takes the first value of every leaf (and
    the first `$or` branch), the next the second, and so on (three at most). Drawn events
    seldom hold the very null, boolean, number or string a pattern names, so many index
    lookups would go untried; these reach them at no drawing cost. They need not match:
    the reference says whether they do."""
    return [_witness(pattern, i) for i in range(min(3, _widest(pattern)))]


def omnibus(pats: list[dict[str, Any]], i: int) -> dict[str, Any]:
    """One event holding, as arrays, the values of every pattern's witness ``i`` at each
    path: a single event that tries every pattern's own values at once (a leaf matches when
    any value of its array does)."""
    merged: dict[str, Any] = {}
    for p in pats:
        _merge_into(merged, _witness(p, i))
    return merged


def _merge_into(into: dict[str, Any], event: dict[str, Any]) -> None:
    for key, value in event.items():
        have = into.setdefault(key, {} if isinstance(value, dict) else [])
        if isinstance(value, dict) and isinstance(have, dict):
            _merge_into(have, value)
        elif not isinstance(value, dict) and isinstance(have, list):
            have.append(value)


def _widest(pattern: dict[str, Any]) -> int:
    widths = [1]
    for key, value in pattern.items():
        if key == "$or":
            widths += [len(value), *(_widest(alt) for alt in value)]
        elif isinstance(value, dict) and key != "$xpath":
            widths.append(_widest(value))
        elif isinstance(value, list):
            widths.append(len(value))
    return max(widths)


def _witness(pattern: dict[str, Any], i: int) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for key, value in pattern.items():
        if key == "$or":
            event.update(_witness(value[i % len(value)], i))
        elif key == "$xpath":
            continue
        elif isinstance(value, dict):
            event[key] = _witness(value, i)
        elif (v := _value(value[i % len(value)])) is not _ABSENT:
            event[key] = v
    return event


def _value(element: Any) -> Any:
    """A value the leaf element names (a match, or for anything-but the excluded value)."""
    if not isinstance(element, dict):
        return element
    ((op, arg),) = element.items()
    if op in ("prefix", "suffix", "anything-but") and isinstance(arg, dict):
        ((_, arg),) = arg.items()
        return arg.swapcase()
    if op == "equals-ignore-case":
        return arg.swapcase()
    if op == "wildcard":  # the shortest text it matches: no '*', escapes resolved
        return re.sub(r"\\(.)|\*", lambda m: m.group(1) or "", arg)
    if op == "numeric":
        return arg[1]
    if op == "exists":
        return "x" if arg else _ABSENT
    if op == "cidr":
        return arg.split("/")[0]
    if op == "anything-but" and isinstance(arg, list):
        return arg[-1]
    return arg  # prefix, suffix, anything-but a value


@settings(max_examples=examples(150, long=400), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(patterns, min_size=1, max_size=8), st.lists(events, min_size=1, max_size=4))
def test_index_agrees_with_reference(pats: list[dict[str, Any]], evs: list[dict[str, Any]]) -> None:
    for p in pats:
        assert validate_pattern(p) == [], p
    index = PatternIndex(pats)
    for ev in [*evs, *(w for p in pats for w in witnesses(p))]:
        expected = [i for i, p in enumerate(pats) if reference_match(p, ev)]
        assert index.matches(ev) == expected, (pats, ev)


@settings(max_examples=examples(150, long=300), deadline=None)
@given(patterns, events)
def test_single_pattern_index_agrees(pattern: dict[str, Any], event: dict[str, Any]) -> None:
    index = PatternIndex([pattern])
    for ev in [event, *witnesses(pattern)]:
        assert index.matches(ev) == ([0] if reference_match(pattern, ev) else []), ev


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


#: A numeric range over BOUNDS: one-sided half the time, two-sided the other half.
range_spec = st.one_of(st.sampled_from(one_bound(BOUNDS)),
                       st.sampled_from(two_bounds(BOUNDS))).map(list)

# A route set draws hundreds of elements: each is two choices, a branch and then one value.
many_element = st.one_of(
    range_spec.map(_numeric),
    range_spec.map(_numeric),
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


@settings(max_examples=examples(60, long=120), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(many_route, min_size=20, max_size=120), st.lists(many_event, min_size=1, max_size=5)
)
def test_many_routes_on_few_fields_agree(
    pats: list[dict[str, Any]], evs: list[dict[str, Any]]
) -> None:
    pats = [p for p in pats if not validate_pattern(p)]  # e.g. a glob with '**' once joined
    index = PatternIndex(pats)
    for ev in [*evs, omnibus(pats, 0), omnibus(pats, 1)]:
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
@given(st.lists(range_spec, max_size=40), st.lists(st.sampled_from(PROBES), min_size=1))
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
