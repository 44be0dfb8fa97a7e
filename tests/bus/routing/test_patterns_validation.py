"""Bad patterns give clear problems, each naming its JSON path; all problems at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from esb.bus.errors import ConfigError
from esb.bus.routing.pattern_index import (
    PatternError,
    PatternIndex,
    reference_match,
    validate_pattern,
)
from esb.bus.routing.pattern_validate import pattern_problems
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files

# (pattern, expected problem prefix, a fragment of the message)
BAD: list[tuple[Any, str, str]] = [
    ("type", "match:", "must be a JSON object"),
    ([{"type": ["x"]}], "match:", "must be a JSON object"),
    ({"type": "order.created"}, "match.type:", "must be an array"),
    ({"data": {"total": 5}}, "match.data.total:", "must be an array"),
    ({"type": []}, "match.type:", "empty array"),
    ({"type": [["x"]]}, "match.type[0]:", "nested arrays"),
    ({"type": [{"contains": "x"}]}, "match.type[0]:", "unknown operator 'contains'"),
    ({"type": [{"prefix": "a", "suffix": "b"}]}, "match.type[0]:", "exactly one key"),
    ({"type": [{"prefix": 5}]}, "match.type[0]:", "prefix needs a string"),
    ({"type": [{"prefix": {"equals-ignore-case": 1}}]}, "match.type[0]:", "equals-ignore-case"),
    ({"type": [{"suffix": ["x"]}]}, "match.type[0]:", "suffix needs a string"),
    ({"type": [{"equals-ignore-case": None}]}, "match.type[0]:", "equals-ignore-case needs"),
    ({"type": [{"wildcard": "a**b"}]}, "match.type[0]:", "consecutive '**'"),
    ({"type": [{"wildcard": "a\\b"}]}, "match.type[0]:", "backslash"),
    ({"type": [{"wildcard": 3}]}, "match.type[0]:", "wildcard needs a string"),
    ({"type": [{"anything-but": True}]}, "match.type[0]:", "anything-but needs"),
    ({"type": [{"anything-but": []}]}, "match.type[0]:", "anything-but list is empty"),
    ({"type": [{"anything-but": ["x", None]}]}, "match.type[0]:", "anything-but[1]"),
    ({"type": [{"anything-but": {"numeric": [">", 1]}}]}, "match.type[0]:", "does not support"),
    ({"type": [{"anything-but": {"prefix": 1}}]}, "match.type[0]:", "anything-but prefix"),
    ({"type": [{"anything-but": {"wildcard": "**"}}]}, "match.type[0]:", "consecutive"),
    ({"data": {"total": [{"numeric": ">= 5"}]}}, "match.data.total[0]:", "numeric needs"),
    ({"data": {"total": [{"numeric": [">=", 1, "<"]}]}}, "match.data.total[0]:", "numeric needs"),
    ({"data": {"total": [{"numeric": ["~", 1]}]}}, "match.data.total[0]:", "comparator '~'"),
    ({"data": {"total": [{"numeric": [">", "1"]}]}}, "match.data.total[0]:", "not a number"),
    ({"data": {"total": [{"numeric": [">", True]}]}}, "match.data.total[0]:", "not a number"),
    (
        {"data": {"total": [{"numeric": [">", 5, "<", 5]}]}},
        "match.data.total[0]:",
        "lower bound 5 is not below upper bound 5",
    ),
    (
        {"data": {"total": [{"numeric": ["<", 9, ">", 5]}]}},
        "match.data.total[0]:",
        "lower bound (> or >=) first",
    ),
    (
        {"data": {"total": [{"numeric": ["=", 1, "<", 5]}]}},
        "match.data.total[0]:",
        "lower bound (> or >=) first",
    ),
    ({"ip": [{"cidr": "10.0.0.300/24"}]}, "match.ip[0]:", "bad cidr"),
    ({"ip": [{"cidr": "10.0.0.0/33"}]}, "match.ip[0]:", "bad cidr"),
    ({"ip": [{"cidr": 10}]}, "match.ip[0]:", "cidr needs a string"),
    ({"x": [{"exists": "yes"}]}, "match.x[0]:", "exists needs true or false"),
    ({"$or": {"type": ["x"]}}, "match.$or:", "non-empty array of objects"),
    ({"$or": []}, "match.$or:", "non-empty array of objects"),
    ({"$or": [{"type": ["x"]}, "y"]}, "match.$or[1]:", "non-empty object"),
    ({"$or": [{}]}, "match.$or[0]:", "non-empty object"),
    ({"$or": [{"type": "x"}]}, "match.$or[0].type:", "must be an array"),
    ({"data": {"$xpath": {"/a[": ["x"]}}}, "match.data.$xpath['/a[']:", "bad xpath"),
    ({"$xpath": {"/a/b": "x"}}, "match.$xpath['/a/b']:", "must be an array"),
    ({"$xpath": ["/a"]}, "match.$xpath:", "$xpath needs a non-empty object"),
    ({"$xpath": {"unknownfn(/a)": ["x"]}}, "match.$xpath['unknownfn(/a)']:", "bad xpath"),
    (
        {"data": {"order": {"$xpath": {"/a": ["x"]}}}},
        "match.data.order.$xpath:",
        "only allowed at the top level",
    ),
    ({"type": {"$xpath": {"/a": ["x"]}}}, "match.type.$xpath:", "only allowed"),
    ({"x": [{"a", "b"}]}, "match.x[0]:", "is not a JSON value"),
    ({"x": [float("nan")]}, "match.x[0]:", "is not a JSON value"),
]


def case_id(value: Any) -> str:
    """``str(value)`` with sets in sorted order: parallel workers must name each case alike."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {case_id(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(case_id(v) for v in value) + "]"
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(sorted(case_id(v) for v in value)) + "}"
    return repr(value)


@pytest.mark.parametrize(("pattern", "where", "fragment"), BAD, ids=[case_id(b[0]) for b in BAD])
def test_bad_pattern(pattern: Any, where: str, fragment: str) -> None:
    problems = validate_pattern(pattern)
    assert problems, pattern
    assert any(p.startswith(where) and fragment in p for p in problems), problems
    with pytest.raises(PatternError) as info:
        PatternIndex([pattern])
    assert info.value.problems
    assert all(p.startswith("patterns[0]") for p in info.value.problems)
    if isinstance(pattern, dict):
        with pytest.raises(PatternError):
            reference_match(pattern, {})


GOOD: list[dict[str, Any]] = [
    {},
    {"data": {}},
    {"type": ["x", 1, 2.5, True, None, {"prefix": ""}]},
    {"type": [{"prefix": {"equals-ignore-case": "A"}}, {"suffix": {"equals-ignore-case": "b"}}]},
    {"type": [{"wildcard": "a*b*c"}, {"wildcard": "a\\*\\\\b"}, {"wildcard": "plain"}]},
    {"type": [{"anything-but": ["a", "b"]}, {"anything-but": [1, 2]}, {"anything-but": 3}]},
    {"type": [{"anything-but": {"equals-ignore-case": ["a", "b"]}}]},
    {"type": [{"anything-but": {"wildcard": ["a*", "*b"]}}]},
    {"n": [{"numeric": ["=", 0]}, {"numeric": [">", -1.5, "<=", 1e9]}, {"numeric": ["<", 0]}]},
    {"ip": [{"cidr": "10.0.0.0/24"}, {"cidr": "2001:db8::/32"}, {"cidr": "10.0.0.1"}]},
    {"x": [{"exists": True}], "y": [{"exists": False}]},
    {"$or": [{"a": ["1"]}], "b": {"$or": [{"c": ["2"]}, {"d": ["3"]}]}},
    {"$xpath": {"/a/b": ["x"]}, "data": {"$xpath": {"count(//c)": [{"numeric": [">", 1]}]}}},
    {"$or": [{"$xpath": {"/a": ["x"]}}, {"data": {"$xpath": {"/b": ["y"]}}}]},
]


@pytest.mark.parametrize("pattern", GOOD, ids=[case_id(g) for g in GOOD])
def test_good_pattern(pattern: dict[str, Any]) -> None:
    assert validate_pattern(pattern) == []
    PatternIndex([pattern])


def test_all_problems_reported_at_once() -> None:
    pattern = {
        "type": "x",
        "data": {"total": [{"numeric": [">", 5, "<", 1]}], "ip": [{"cidr": "nope"}]},
        "$or": [],
    }
    problems = validate_pattern(pattern)
    assert len(problems) == 4, problems
    assert [p.split(":")[0] for p in problems] == [
        "match.type",
        "match.data.total[0]",
        "match.data.ip[0]",
        "match.$or",
    ]


def test_where_prefix() -> None:
    assert validate_pattern({"type": "x"}, "routes[3].match") == [
        "routes[3].match.type: a pattern value must be an array of values or operators "
        "(e.g. ['x']) or an object, got str"
    ]


def test_index_reports_every_pattern() -> None:
    with pytest.raises(PatternError) as info:
        PatternIndex([{"a": ["ok"]}, {"b": "bad"}, {"c": []}])
    assert [p.split(":")[0] for p in info.value.problems] == ["patterns[1].b", "patterns[2].c"]
    assert isinstance(info.value, ValueError)
    assert "patterns[1].b" in str(info.value)


def test_namespace_prefixes() -> None:
    pattern = {"$xpath": {"/o:order/o:total": [{"numeric": [">=", 1000]}]}}
    # Without a namespace map a prefix cannot be judged; with one it must be defined.
    assert validate_pattern(pattern) == []
    assert validate_pattern(pattern, namespaces={"o": "urn:o"}) == []
    problems = validate_pattern(pattern, namespaces={"x": "urn:x"})
    assert len(problems) == 1
    assert problems[0].startswith("match.$xpath['/o:order/o:total']: bad xpath")
    assert "prefix" in problems[0]
    with pytest.raises(PatternError, match="namespace prefix"):
        PatternIndex([pattern])
    assert PatternIndex([pattern], {"o": "urn:o"}).needs_xml


def test_too_many_alternatives() -> None:
    ors = [{"$or": [{"a": [str(i)]} for i in range(4)]} for _ in range(5)]
    pattern = {f"k{i}": o for i, o in enumerate(ors)}  # 4**5 = 1024 alternatives
    problems = validate_pattern(pattern)
    assert len(problems) == 1 and "alternatives" in problems[0]


# -- problems located in route files -------------------------------------------------------------

def test_problems_carry_the_key_path_of_the_offending_part() -> None:
    pattern = {"data": {"$xpath": {"/a[": ["x"]}, "n": [1, {"numeric": [">", "x"]}]},
               "$or": [{"type": ["a"]}, {"type": "b"}]}
    problems = pattern_problems(pattern)
    assert [p.loc for p in problems] == [("data", "$xpath", "/a["), ("data", "n", 1),
                                         ("$or", 1, "type")]
    assert [p.render("match") for p in problems] == validate_pattern(pattern)


DEEP = """\
routes:
  - name: deep
    match:
      type: [order.created]
      $or:
        - source: [shop]
        - data:
            customer:
              tier: [{numeric: ["~", 1]}]
      data:
        $xpath:
          "/order[": [x]
        total:
          - 5
          - exists: "yes"
    to: [erp]
"""


def route_problems(files: dict[str, str], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_routes(parse_route_files(files), sources={"shop"}, destinations={"erp"},
                       base_dir=tmp_path)
    return info.value.problems


def test_a_pattern_problem_names_the_line_of_its_key(tmp_path: Path) -> None:
    problems = route_problems({"r.yaml": DEEP}, tmp_path)
    assert [p.split(": ")[0] for p in problems] == ["r.yaml:9", "r.yaml:12", "r.yaml:15"]
    assert problems[0].startswith(
        "r.yaml:9: deep: match.$or[1].data.customer.tier[0]: numeric comparator '~'")
    assert problems[1].startswith("r.yaml:12: deep: match.data.$xpath['/order[']: bad xpath")
    assert problems[2] == "r.yaml:15: deep: match.data.total[1]: exists needs true or false"


def test_schema_problems_do_not_hide_the_other_routes_problems(tmp_path: Path) -> None:
    text = DEEP.replace("    to: [erp]\n", "    to: [erp]\n    colour: red\n", 1) + """\
  - name: other
    from: [shoop]
    match: {type: [{prefix: 1}]}
    to: [erp]
tested: yes
"""
    problems = route_problems({"r.yaml": text}, tmp_path)
    assert [p.split(": ")[0] for p in problems] == ["r.yaml:17", "r.yaml:19", "r.yaml:20",
                                                    "r.yaml:22"]
    assert problems[0] == "r.yaml:17: routes.0.colour: unknown key"  # nothing else of 'deep'
    assert "other: from: unknown source 'shoop'" in problems[1]
    assert "other: match.type[0]: prefix needs a string" in problems[2]
    assert problems[3] == "r.yaml:22: tested: unknown key"


def test_routes_of_a_file_with_bad_namespaces_are_not_checked_further(tmp_path: Path) -> None:
    text = """\
namespaces: {o: 5}
routes:
  - name: by-xpath
    match: {$xpath: {"/o:order": [x]}}
    to: [nowhere]
"""
    problems = route_problems({"r.yaml": text}, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("r.yaml:1: namespaces.o:"), problems
