"""The reference evaluator: a plain recursive interpreter of the pattern language.

It is the oracle the compiled :class:`~esb.bus.routing.pattern_index.PatternIndex` is tested
against, so it favours being obviously right over being fast. See ``docs/routing.md``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lxml import etree

from .pattern_validate import PatternError, compile_xpath, is_number, validate_pattern

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Conj",
    "expand",
    "parse_xml_number",
    "reference_match",
    "scalars",
    "wildcard_regex",
    "xpath_values",
]

_NUMBER_TEXT = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*")


def parse_xml_number(text: str) -> float | None:
    """The number an XML text spells (JSON number syntax, surrounding blanks allowed)."""
    if _NUMBER_TEXT.fullmatch(text) is None:
        return None
    try:
        return float(text)
    except OverflowError:  # pragma: no cover - float() returns inf rather than raising
        return None


def wildcard_regex(glob: str) -> re.Pattern[str]:
    """``*`` matches any run of characters; ``\\*`` is a literal star, ``\\\\`` a backslash."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def scalars(value: Any, out: list[Any] | None = None) -> list[Any]:
    """The leaf values at an event position: arrays are expanded, objects are not leaves."""
    if out is None:
        out = []
    if isinstance(value, list):
        for item in value:
            scalars(item, out)
    elif not isinstance(value, Mapping) and value is not _MISSING:
        out.append(value)
    return out


def xpath_values(xp: Callable[[Any], Any], root: Any) -> list[Any]:
    """The value set of an XPath result (see docs/routing.md); [] when it cannot be evaluated."""
    try:
        result = xp(root)
    except etree.XPathError:
        return []
    if isinstance(result, list):
        values: list[Any] = []
        for item in result:
            if isinstance(item, str):
                values.append(str(item))
            elif isinstance(item, etree._Element):
                if isinstance(item.tag, str):
                    values.append("".join(item.itertext()))
                else:  # comment / processing instruction
                    values.append(item.text or "")
            else:  # pragma: no cover - namespace nodes come back as tuples
                values.append(str(item))
        return values
    if isinstance(result, bool):
        return [result]
    if isinstance(result, float):
        return [result]
    return [str(result)]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()


# ---------------------------------------------------------------------------- $or expansion


@dataclass
class Conj:
    """One `$or`-free alternative of a pattern, as a tree of object nodes.

    ``leaves[key]`` holds every leaf array that applies to ``key`` (more than one when `$or`
    merging put two on the same field; all must hold). ``xpath`` is only used on the root.
    """

    leaves: dict[str, list[list[Any]]] = field(default_factory=dict)
    kids: dict[str, Conj] = field(default_factory=dict)
    xpath: list[tuple[str, list[Any]]] = field(default_factory=list)


def _merge(a: Conj, b: Conj) -> Conj:
    out = Conj(
        leaves={k: list(v) for k, v in a.leaves.items()},
        kids=dict(a.kids),
        xpath=[*a.xpath, *b.xpath],
    )
    for k, v in b.leaves.items():
        out.leaves.setdefault(k, []).extend(v)
    for k, v in b.kids.items():
        out.kids[k] = _merge(out.kids[k], v) if k in out.kids else v
    return out


def expand(obj: Mapping[str, Any]) -> list[Conj]:
    """Every alternative of a validated pattern: each `$or` branch merged with its siblings."""
    alts = [Conj()]
    for key, value in obj.items():
        if key == "$or":
            options = [c for alt in value for c in expand(alt)]
            alts = [_merge(a, o) for a in alts for o in options]
        elif key == "$xpath":
            for a in alts:
                a.xpath.extend(value.items())
        elif isinstance(value, Mapping):
            subs = expand(value)
            new: list[Conj] = []
            for a in alts:
                for s in subs:
                    # Hoist xpath conditions to the root: they apply to the payload, not a field.
                    child = Conj(leaves=s.leaves, kids=s.kids)
                    new.append(_merge(a, Conj(kids={key: child}, xpath=s.xpath)))
            alts = new
        else:
            for a in alts:
                a.leaves.setdefault(key, []).append(value)
    return alts


# ---------------------------------------------------------------------------- leaf semantics


def _exact(expected: Any, value: Any, xml: bool) -> bool:
    if type(expected) is str:
        return type(value) is str and value == expected
    if type(expected) is bool:
        return type(value) is bool and value == expected
    if expected is None:
        return value is None
    # a number
    if is_number(value):
        return value == expected
    if xml and type(value) is str:
        n = parse_xml_number(value)
        return n is not None and n == expected
    return False


def _as_number(value: Any, xml: bool) -> float | int | None:
    if is_number(value):
        return value
    if xml and type(value) is str:
        return parse_xml_number(value)
    return None


def _string_op(op: str, arg: Any, value: Any) -> bool:
    if type(value) is not str:
        return False
    if op == "equals-ignore-case":
        return value.lower() == arg.lower()
    if isinstance(arg, Mapping):  # {"prefix": {"equals-ignore-case": s}}
        text, want = value.lower(), arg["equals-ignore-case"].lower()
    else:
        text, want = value, arg
    if op == "prefix":
        return text.startswith(want)
    if op == "suffix":
        return text.endswith(want)
    if op == "wildcard":
        return wildcard_regex(arg).fullmatch(value) is not None
    raise AssertionError(op)


def _compare(op: str, a: float, b: float) -> bool:
    return {
        "<": a < b,
        "<=": a <= b,
        "=": a == b,
        ">=": a >= b,
        ">": a > b,
    }[op]


def _anything_but(arg: Any, value: Any, xml: bool) -> bool:
    if isinstance(arg, list):
        return not any(_exact(x, value, xml) for x in arg)
    if isinstance(arg, Mapping):
        ((op, val),) = arg.items()
        if type(value) is not str:
            return False
        items = val if isinstance(val, list) else [val]
        if op == "equals-ignore-case":
            return all(value.lower() != s.lower() for s in items)
        return not any(_string_op(op, s, value) for s in items)
    return not _exact(arg, value, xml)


def _element_matches(elem: Any, value: Any, xml: bool) -> bool:
    """Does one non-exists leaf element match one present value?"""
    if not isinstance(elem, Mapping):
        return _exact(elem, value, xml)
    ((op, arg),) = elem.items()
    if op in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
        return _string_op(op, arg, value)
    if op == "anything-but":
        return _anything_but(arg, value, xml)
    if op == "numeric":
        n = _as_number(value, xml)
        if n is None:
            return False
        return all(_compare(arg[i], n, arg[i + 1]) for i in range(0, len(arg), 2))
    if op == "cidr":
        if type(value) is not str:
            return False
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return False
        net = ipaddress.ip_network(arg, strict=False)
        return addr.version == net.version and addr in net
    raise AssertionError(op)


def _leaf_matches(leaf: list[Any], values: list[Any], xml: bool = False) -> bool:
    """ANY element of the leaf array matches; `values` are the field's leaf values (may be [])."""
    for elem in leaf:
        if isinstance(elem, Mapping) and "exists" in elem:
            if bool(values) == elem["exists"]:
                return True
        elif any(_element_matches(elem, v, xml) for v in values):
            return True
    return False


def _objects_in(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [o for item in value for o in _objects_in(item)]
    return []


def _conj_matches(node: Conj, value: Any) -> bool:
    """A nested pattern object against an event value.

    If the value is an array of objects, the WHOLE sub-pattern must hold for one element
    (array consistency, like event-ruler's rulesForJSONEvent). With no object there, the
    sub-pattern is tested against an empty object (so only absence conditions can hold).
    """
    objects = _objects_in(value) or [{}]
    return any(_object_matches(node, obj) for obj in objects)


def _object_matches(node: Conj, obj: Mapping[str, Any]) -> bool:
    for key, leaves in node.leaves.items():
        values = scalars(obj.get(key, _MISSING))
        if not all(_leaf_matches(leaf, values) for leaf in leaves):
            return False
    return all(_conj_matches(kid, obj.get(key, _MISSING)) for key, kid in node.kids.items())


def reference_match(
    pattern: Mapping[str, Any],
    event: Mapping[str, Any],
    xml_root: etree._Element | None = None,
    namespaces: Mapping[str, str] | None = None,
) -> bool:
    """A plain, obviously-correct recursive evaluator of the pattern semantics.

    Raises :class:`PatternError` for an invalid pattern. ``xml_root`` is the parsed XML payload
    for ``$xpath`` keys (None: they do not match).
    """
    problems = validate_pattern(pattern, namespaces=namespaces or {})
    if problems:
        raise PatternError(problems)
    for conj in expand(pattern):
        if not _object_matches(conj, event):
            continue
        if conj.xpath and xml_root is None:
            continue  # no XML payload: $xpath conditions never hold, not even exists:false
        if all(
            _leaf_matches(leaf, xpath_values(compile_xpath(expr, namespaces), xml_root), xml=True)
            for expr, leaf in conj.xpath
        ):
            return True
    return False
