"""Validation of event patterns: every problem at once, each naming its JSON path."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

__all__ = [
    "MAX_ALTERNATIVES",
    "OPERATORS",
    "XPATH_PATHS",
    "PatternError",
    "PatternProblem",
    "compile_xpath",
    "count_alternatives",
    "pattern_problems",
    "render_loc",
    "validate_pattern",
]

# `$or` is expanded into alternatives (disjunctive normal form) up-front; this bounds the blow-up.
MAX_ALTERNATIVES = 256

OPERATORS = frozenset(
    {
        "prefix",
        "suffix",
        "equals-ignore-case",
        "wildcard",
        "anything-but",
        "numeric",
        "exists",
        "cidr",
    }
)
LOWER_OPS = frozenset({">", ">="})
UPPER_OPS = frozenset({"<", "<="})
NUMERIC_OPS = LOWER_OPS | UPPER_OPS | {"="}

# Object paths (from the pattern root) where a `$xpath` key is accepted.
XPATH_PATHS = frozenset({(), ("data",)})

_DUMMY_DOC = etree.fromstring("<esb-xpath-check/>")


class PatternError(ValueError):
    """A pattern (or several) is invalid; ``problems`` lists every problem with its JSON path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems) if problems else "invalid pattern")
        self.problems: list[str] = list(problems)


def is_number(value: Any) -> bool:
    """True for JSON numbers (bool is not a number here); NaN/inf are not JSON numbers."""
    return type(value) in (int, float) and not (type(value) is float and not math.isfinite(value))


def is_scalar(value: Any) -> bool:
    return value is None or type(value) in (str, bool) or is_number(value)


def compile_xpath(expr: str, namespaces: Mapping[str, str] | None) -> etree.XPath:
    """Compile an XPath 1.0 expression; raises ``etree.XPathError`` when it is not usable.

    lxml only notices undefined prefixes and unknown functions on evaluation, so the
    expression is also run once against a tiny document.
    """
    xp = etree.XPath(expr, namespaces=dict(namespaces) if namespaces else None)
    xp(_DUMMY_DOC)
    return xp


Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class PatternProblem:
    """One problem in a pattern: where it is (a key path from the pattern root) and what."""

    loc: Loc
    message: str

    def render(self, root: str = "match") -> str:
        """``"match.data.total[0]: <message>"`` — the JSON path rooted at ``root``."""
        return f"{render_loc(root, self.loc)}: {self.message}"


def render_loc(root: str, loc: Loc) -> str:
    """The JSON path of ``loc``: keys as ``.key``, items as ``[i]``, XPath expressions (the
    keys under ``$xpath``) as ``['expr']``."""
    out = root
    parent: str | int | None = None
    for part in loc:
        if isinstance(part, int) or parent == "$xpath":
            out += f"[{part!r}]"
        else:
            out += f".{part}"
        parent = part
    return out


class _Problems(list[PatternProblem]):
    def add(self, loc: Loc, message: str) -> None:
        self.append(PatternProblem(loc, message))


#: What a wildcard's checks look at, left to right: a backslash with what it escapes (when
#: that is '*' or '\'), and each run of unescaped '*'.
_WILDCARD_TOKEN = re.compile(r"\\[*\\]?|\*+")


def _check_wildcard(text: str, loc: Loc, problems: _Problems) -> None:
    for token in _WILDCARD_TOKEN.finditer(text):
        if token[0] == "\\":
            problems.add(loc, "wildcard backslash may only escape '*' or '\\' "
                              f"(at offset {token.start()})")
            return
        if token[0].startswith("**"):
            problems.add(loc, "wildcard may not contain consecutive '**'")
            return


def _check_string_or_ignore_case(arg: Any, op: str, loc: Loc, problems: _Problems) -> None:
    """prefix/suffix take a string or {"equals-ignore-case": string}."""
    if type(arg) is str:
        return
    if isinstance(arg, Mapping) and list(arg) == ["equals-ignore-case"]:
        if type(arg["equals-ignore-case"]) is not str:
            problems.add(loc, f"{op} equals-ignore-case needs a string")
        return
    problems.add(loc, f'{op} needs a string or {{"equals-ignore-case": string}}')


def _check_numeric(spec: Any, loc: Loc, problems: _Problems) -> None:
    if not isinstance(spec, list) or len(spec) not in (2, 4):
        problems.add(loc, "numeric needs [op, number] or [lower-op, number, upper-op, number], "
                          'e.g. [">", 0, "<=", 5]')
        return
    ok = True
    for i in range(0, len(spec), 2):
        op, bound = spec[i], spec[i + 1]
        if op not in NUMERIC_OPS:
            problems.add(loc, f"numeric comparator {op!r} is not one of < <= = >= >")
            ok = False
        if not is_number(bound):
            problems.add(loc, f"numeric bound {bound!r} is not a number")
            ok = False
    if not ok or len(spec) == 2:
        return
    lo_op, lo, hi_op, hi = spec
    if lo_op not in LOWER_OPS or hi_op not in UPPER_OPS:
        problems.add(loc, "numeric with two comparisons needs a lower bound (> or >=) first and "
                          "an upper bound (< or <=) second")
    elif not lo < hi:
        problems.add(loc, f"numeric lower bound {lo!r} is not below upper bound {hi!r}")


def _check_anything_but_object(arg: Mapping[Any, Any], loc: Loc, problems: _Problems) -> None:
    if len(arg) != 1:
        problems.add(loc, "anything-but object needs exactly one of prefix, suffix, "
                          "equals-ignore-case, wildcard")
        return
    ((op, val),) = arg.items()
    if op in ("prefix", "suffix"):
        if type(val) is not str:
            problems.add(loc, f"anything-but {op} needs a string")
    elif op in ("equals-ignore-case", "wildcard"):
        items = val if isinstance(val, list) else [val]
        if not items:
            problems.add(loc, f"anything-but {op} list is empty")
        for item in items:
            if type(item) is not str:
                problems.add(loc, f"anything-but {op} needs a string or strings")
                break
            if op == "wildcard":
                _check_wildcard(item, loc, problems)
    else:
        problems.add(loc, f"anything-but does not support {op!r} (use prefix, suffix, "
                          "equals-ignore-case or wildcard)")


def _check_anything_but(arg: Any, loc: Loc, problems: _Problems) -> None:
    if type(arg) is str or is_number(arg):
        return
    if isinstance(arg, list):
        if not arg:
            problems.add(loc, "anything-but list is empty")
        for i, item in enumerate(arg):
            if not (type(item) is str or is_number(item)):
                problems.add(loc, f"anything-but[{i}] must be a string or a number")
        return
    if isinstance(arg, Mapping):
        _check_anything_but_object(arg, loc, problems)
        return
    problems.add(loc, "anything-but needs a string, a number, a list of them, or an object")


def _check_operator(elem: Mapping[str, Any], loc: Loc, problems: _Problems) -> None:
    if len(elem) != 1:
        problems.add(loc, f"an operator object has exactly one key, got {sorted(map(str, elem))}")
        return
    ((op, arg),) = elem.items()
    if op not in OPERATORS:
        problems.add(loc, f"unknown operator {op!r}")
    elif op in ("prefix", "suffix"):
        _check_string_or_ignore_case(arg, op, loc, problems)
    elif op in ("equals-ignore-case", "wildcard"):
        if type(arg) is not str:
            problems.add(loc, f"{op} needs a string")
        elif op == "wildcard":
            _check_wildcard(arg, loc, problems)
    elif op == "anything-but":
        _check_anything_but(arg, loc, problems)
    elif op == "numeric":
        _check_numeric(arg, loc, problems)
    elif op == "exists":
        if type(arg) is not bool:
            problems.add(loc, "exists needs true or false")
    elif op == "cidr":
        _check_cidr(arg, loc, problems)


def _check_cidr(arg: Any, loc: Loc, problems: _Problems) -> None:
    if type(arg) is not str:
        problems.add(loc, "cidr needs a string such as '10.0.0.0/24'")
        return
    try:
        ipaddress.ip_network(arg, strict=False)
    except ValueError as exc:
        problems.add(loc, f"bad cidr {arg!r}: {exc}")


def _check_leaf(leaf: Any, loc: Loc, problems: _Problems) -> None:
    if not isinstance(leaf, list):
        problems.add(loc, "a pattern value must be an array of values or operators "
                          f"(e.g. [{leaf!r}]) or an object, got {type(leaf).__name__}")
        return
    if not leaf:
        problems.add(loc, "empty array matches nothing")
    for i, elem in enumerate(leaf):
        at = (*loc, i)
        if isinstance(elem, Mapping):
            _check_operator(elem, at, problems)
        elif isinstance(elem, list):
            problems.add(at, "nested arrays are not allowed in a pattern value")
        elif not is_scalar(elem):
            problems.add(at, f"{elem!r} is not a JSON value or operator")


def _check_xpath(spec: Any, loc: Loc, namespaces: Mapping[str, str] | None,
                 problems: _Problems) -> None:
    if not isinstance(spec, Mapping) or not spec:
        problems.add(loc, "$xpath needs a non-empty object of expression -> array")
        return
    for expr, leaf in spec.items():
        at = (*loc, expr)
        if not isinstance(expr, str) or not expr.strip():
            problems.add(at, "xpath expression must be a non-empty string")
            continue
        try:
            compile_xpath(expr, namespaces or {})
        except etree.XPathError as exc:
            msg = str(exc)
            # Without a namespace map (plain validate_pattern) prefixes cannot be judged.
            if not (namespaces is None and "namespace prefix" in msg.lower()):
                problems.add(at, f"bad xpath: {msg}")
        _check_leaf(leaf, at, problems)


def _check_or(value: Any, loc: Loc, path: tuple[str, ...],
              namespaces: Mapping[str, str] | None, problems: _Problems) -> None:
    if not isinstance(value, list) or not value:
        problems.add(loc, "$or needs a non-empty array of objects")
        return
    for i, alt in enumerate(value):
        if isinstance(alt, Mapping) and alt:
            _check_object(alt, (*loc, i), path, namespaces, problems)
        else:
            problems.add((*loc, i), "each $or alternative must be a non-empty object")


def _check_object(obj: Any, loc: Loc, path: tuple[str, ...],
                  namespaces: Mapping[str, str] | None, problems: _Problems) -> None:
    """``loc`` is where ``obj`` is written; ``path`` its field path for matching (``$or``
    alternatives add to ``loc`` but not to ``path``)."""
    if not isinstance(obj, Mapping):
        problems.add(loc, f"a pattern must be a JSON object, got {type(obj).__name__}")
        return
    for key, value in obj.items():
        if not isinstance(key, str):
            problems.add(loc, f"field name {key!r} is not a string")
            continue
        at = (*loc, key)
        if key == "$or":
            _check_or(value, at, path, namespaces, problems)
        elif key == "$xpath":
            if path not in XPATH_PATHS:
                problems.add(at, "$xpath is only allowed at the top level of the pattern or of "
                                 "data")
            else:
                _check_xpath(value, at, namespaces, problems)
        elif isinstance(value, Mapping):
            _check_object(value, at, (*path, key), namespaces, problems)
        else:
            _check_leaf(value, at, problems)


def count_alternatives(obj: Mapping[str, Any]) -> int:
    """How many `$or`-free alternatives a (structurally valid) pattern expands into."""
    total = 1
    for key, value in obj.items():
        if key == "$or" and isinstance(value, list):
            total *= sum(count_alternatives(a) for a in value if isinstance(a, Mapping))
        elif isinstance(value, Mapping) and key != "$xpath":
            total *= count_alternatives(value)
        if total > MAX_ALTERNATIVES:
            return total
    return total


def pattern_problems(pattern: Any, *,
                     namespaces: Mapping[str, str] | None = None) -> list[PatternProblem]:
    """Every problem in one pattern, each with the key path (from the pattern root) of the
    offending part — so a caller holding the pattern's source can point at its line."""
    problems = _Problems()
    _check_object(pattern, (), (), namespaces, problems)
    if not problems:
        n = count_alternatives(pattern)
        if n > MAX_ALTERNATIVES:
            problems.add((), f"$or expands into more than {MAX_ALTERNATIVES} alternatives "
                             f"({n}); simplify the pattern")
    return list(problems)


def validate_pattern(
    pattern: Any,
    where: str = "match",
    *,
    namespaces: Mapping[str, str] | None = None,
) -> list[str]:
    """Every problem in one pattern (empty list = valid).

    Each problem starts with the JSON path of the offending part, rooted at ``where``, e.g.
    ``"match.data.total[0]: numeric bound 'x' is not a number"``. Pass ``namespaces`` (the
    prefix map used for ``$xpath``) to also report undefined namespace prefixes; without it
    prefixed XPath expressions are only checked for syntax.
    """
    return [p.render(where) for p in pattern_problems(pattern, namespaces=namespaces)]
