"""Compilation of one leaf array into a fast predicate plus its index entries."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import Any

from .pattern_reference import parse_xml_number, wildcard_regex

__all__ = ["RANK", "LeafFn", "compile_leaf", "value_key"]

LeafFn = Callable[[list[Any]], bool]

# Index entry kinds, most selective first; an alternative is anchored on its best leaf.
RANK = {"eq": 0, "eqi": 1, "pre": 2, "prei": 2, "suf": 3, "sufi": 3, "num": 4}

_INF = math.inf
_NULL_KEY = ("z",)


def value_key(value: Any) -> Any:
    """Hash key for exact matching: strings are their own key; 5 and 5.0 share one; bools
    and null get keys that never collide with numbers (True == 1 in Python)."""
    t = type(value)
    if t is str:
        return value
    if t is bool:
        return ("b", value)
    if value is None:
        return _NULL_KEY
    return ("n", value)


def _xml_keys(value: Any) -> tuple[Any, ...]:
    """XML text that spells a number also equals that number."""
    if type(value) is str:
        n = parse_xml_number(value)
        return (value,) if n is None else (value, ("n", n))
    return (value_key(value),)


def _numeric_fn(spec: list[Any], xml: bool) -> tuple[Callable[[Any], bool], Any]:
    lo, lo_incl, hi, hi_incl = -_INF, False, _INF, False
    eq: Any = None
    for i in range(0, len(spec), 2):
        op, bound = spec[i], spec[i + 1]
        if op == "=":
            eq = bound
        elif op in (">", ">="):
            lo, lo_incl = bound, op == ">="
        else:
            hi, hi_incl = bound, op == "<="

    def as_num(v: Any) -> Any:
        if type(v) in (int, float):
            return v
        if xml and type(v) is str:
            return parse_xml_number(v)
        return None

    if eq is not None:

        def pred(v: Any) -> bool:
            n = as_num(v)
            return n is not None and n == eq

        return pred, ("eq", ("n", eq))

    def pred_range(v: Any) -> bool:
        n = as_num(v)
        if n is None:
            return False
        return (n > lo or (lo_incl and n == lo)) and (n < hi or (hi_incl and n == hi))

    return pred_range, ("num", (lo, lo_incl, hi, hi_incl))


def _affix_fn(op: str, arg: Any) -> tuple[Callable[[Any], bool], Any]:
    if isinstance(arg, Mapping):
        want = arg["equals-ignore-case"].lower()
        if op == "prefix":
            return (lambda v: type(v) is str and v.lower().startswith(want)), ("prei", want)
        return (lambda v: type(v) is str and v.lower().endswith(want)), ("sufi", want)
    if op == "prefix":
        return (lambda v: type(v) is str and v.startswith(arg)), ("pre", arg)
    return (lambda v: type(v) is str and v.endswith(arg)), ("suf", arg)


def _wildcard_entry(glob: str) -> Any:
    """A wildcard is anchored on its literal text before the first unescaped '*'."""
    lit: list[str] = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "\\" and i + 1 < len(glob):
            lit.append(glob[i + 1])
            i += 2
            continue
        if ch == "*":
            return ("pre", "".join(lit)) if lit else None
        lit.append(ch)
        i += 1
    return ("eq", "".join(lit))


def _anything_but_fn(arg: Any, xml: bool) -> Callable[[Any], bool]:
    if isinstance(arg, Mapping):
        ((op, val),) = arg.items()
        items = val if isinstance(val, list) else [val]
        if op == "prefix":
            return lambda v: type(v) is str and not v.startswith(val)
        if op == "suffix":
            return lambda v: type(v) is str and not v.endswith(val)
        if op == "equals-ignore-case":
            lowered = frozenset(s.lower() for s in items)
            return lambda v: type(v) is str and v.lower() not in lowered
        regexes = [wildcard_regex(s) for s in items]
        return lambda v: type(v) is str and not any(r.fullmatch(v) for r in regexes)
    excluded = frozenset(value_key(x) for x in (arg if isinstance(arg, list) else [arg]))
    if xml:
        return lambda v: excluded.isdisjoint(_xml_keys(v))
    return lambda v: value_key(v) not in excluded


def _cidr_fn(arg: str) -> Callable[[Any], bool]:
    net = ipaddress.ip_network(arg, strict=False)

    def pred(v: Any) -> bool:
        if type(v) is not str:
            return False
        try:
            addr = ipaddress.ip_address(v)
        except ValueError:
            return False
        return addr.version == net.version and addr in net

    return pred


def compile_leaf(leaf: list[Any], xml: bool = False) -> tuple[LeafFn, bool, list[Any] | None]:
    """Compile a validated leaf array.

    Returns ``(fn, nullable, entries)``: ``fn(values)`` tests the field's leaf values (``[]``
    when missing); ``nullable`` says a missing field can satisfy it; ``entries`` are the
    index entries that together cover every way it can match, or None when some element
    cannot be indexed.
    """
    exact: set[Any] = set()
    preds: list[Callable[[Any], bool]] = []
    entries: list[Any] | None = []
    exists_true = exists_false = False
    for elem in leaf:
        entry: Any = None
        if not isinstance(elem, Mapping):
            exact.add(value_key(elem))
            entry = ("eq", value_key(elem))
        else:
            ((op, arg),) = elem.items()
            if op == "exists":
                exists_true |= arg is True
                exists_false |= arg is False
            elif op in ("prefix", "suffix"):
                pred, entry = _affix_fn(op, arg)
                preds.append(pred)
            elif op == "equals-ignore-case":
                want = arg.lower()
                preds.append(lambda v, w=want: type(v) is str and v.lower() == w)
                entry = ("eqi", want)
            elif op == "wildcard":
                regex = wildcard_regex(arg)
                preds.append(lambda v, r=regex: type(v) is str and r.fullmatch(v) is not None)
                entry = _wildcard_entry(arg)
            elif op == "anything-but":
                preds.append(_anything_but_fn(arg, xml))
            elif op == "numeric":
                pred, entry = _numeric_fn(arg, xml)
                preds.append(pred)
            elif op == "cidr":
                preds.append(_cidr_fn(arg))
            else:  # pragma: no cover - validated earlier
                raise AssertionError(op)
        if entry is None or xml:
            entries = None
        elif entries is not None:
            entries.append(entry)

    exact_keys = frozenset(exact)
    pred_list = tuple(preds)

    def fn(values: list[Any]) -> bool:
        if not values:
            return exists_false
        if exists_true:
            return True
        if exact_keys:
            for v in values:
                if xml:
                    if not exact_keys.isdisjoint(_xml_keys(v)):
                        return True
                elif (v if type(v) is str else value_key(v)) in exact_keys:
                    return True
        for p in pred_list:
            for v in values:
                if p(v):
                    return True
        return False

    return fn, exists_false, entries
