"""Compilation of one leaf array into a fast predicate plus its index entries, and the
numeric-range index those entries feed (:class:`RangeIndex`)."""

from __future__ import annotations

import ipaddress
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .pattern_reference import parse_xml_number, wildcard_regex

__all__ = [
    "RANK",
    "IpAddress",
    "LeafFn",
    "NumKey",
    "RangeIndex",
    "cidr_key",
    "compile_leaf",
    "is_weak",
    "mean_cover",
    "parse_ip",
    "value_key",
]

LeafFn = Callable[[list[Any]], bool]
#: A numeric range: (lower bound, lower inclusive, upper bound, upper inclusive).
NumKey = tuple[float, bool, float, bool]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Index entry kinds, most selective first; an alternative is anchored on its best leaf.
# "present": the field has some leaf value; "absent": it has none; "cidr": (version, prefix
# length, network bits) of an IP network.
RANK = {
    "eq": 0,
    "eqi": 1,
    "pre": 2,
    "prei": 2,
    "suf": 3,
    "sufi": 3,
    "cidr": 3,
    "num": 4,
    "present": 5,
    "absent": 6,
}
_AFFIX_KINDS = frozenset(("pre", "prei", "suf", "sufi"))

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


def _wildcard_parts(glob: str) -> list[str]:
    """The literal runs between the unescaped '*'s of a glob, escapes resolved."""
    parts: list[list[str]] = [[]]
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "\\" and i + 1 < len(glob):
            parts[-1].append(glob[i + 1])
            i += 2
            continue
        if ch == "*":
            parts.append([])
        else:
            parts[-1].append(ch)
        i += 1
    return ["".join(p) for p in parts]


def _wildcard_entry(glob: str) -> Any:
    """A wildcard's index entry: no '*' is an exact value; otherwise its literal head (text
    before the first '*') as a prefix, else its literal tail (after the last '*') as a
    suffix; ``*…*`` with neither only says "some string" (the empty prefix)."""
    parts = _wildcard_parts(glob)
    if len(parts) == 1:
        return ("eq", parts[0])
    if parts[0]:
        return ("pre", parts[0])
    if parts[-1]:
        return ("suf", parts[-1])
    return ("pre", "")


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


def parse_ip(v: Any) -> IpAddress | None:
    """The IP address a leaf value spells, or None (not a string, not an address)."""
    if type(v) is not str:
        return None
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


def cidr_key(version: int, prefixlen: int, address: int) -> tuple[int, int, int]:
    """Index key of the network of that prefix length holding `address` (an int): an
    address is in a network exactly when both give the same key."""
    bits = 32 if version == 4 else 128
    return version, prefixlen, address >> (bits - prefixlen)


def _cidr_fn(arg: str) -> tuple[Callable[[Any], bool], Any]:
    net = ipaddress.ip_network(arg, strict=False)

    def pred(v: Any) -> bool:
        addr = parse_ip(v)
        return addr is not None and addr.version == net.version and addr in net

    key = cidr_key(net.version, net.prefixlen, int(net.network_address))
    return pred, ("cidr", key)


def compile_leaf(leaf: list[Any], xml: bool = False) -> tuple[LeafFn, bool, list[Any]]:
    """Compile a validated leaf array.

    Returns ``(fn, nullable, entries)``: ``fn(values)`` tests the field's leaf values (``[]``
    when missing); ``nullable`` says a missing field can satisfy it; ``entries`` are the
    index entries that together cover every way it can match (``("absent", None)`` for a
    missing field).

    With ``xml`` the values are those of an XPath result (strings, numbers, booleans) and a
    string also stands for the number it spells. The entries are the same: the XPath field's
    lookup (see ``patterns._XField``) probes a string's number as well.
    """
    exact: set[Any] = set()
    preds: list[Callable[[Any], bool]] = []
    entries: list[Any] = []
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
                entry = ("present", None) if arg is True else ("absent", None)
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
                # Never a missing field; the object forms only ever match strings.
                entry = ("pre", "") if isinstance(arg, Mapping) else ("present", None)
            elif op == "numeric":
                pred, entry = _numeric_fn(arg, xml)
                preds.append(pred)
            elif op == "cidr":
                pred, entry = _cidr_fn(arg)
                preds.append(pred)
            else:  # pragma: no cover - validated earlier
                raise AssertionError(op)
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


def is_weak(kind: str, key: Any) -> bool:
    """Entries that hold for most events (some value, no value, any string): an alternative
    is anchored on one only when it has nothing more selective."""
    return kind in ("present", "absent") or (kind in _AFFIX_KINDS and key == "")


class _Regions:
    """The number line cut at every range endpoint into elementary regions.

    With sorted distinct endpoints e0 < e1 < … < e(k-1), region 2i+1 is the single number
    e_i and region 2i the open interval just below it (region 0 lies below e0, region 2k
    above the last endpoint). Each range is a run of consecutive regions, and each region
    lies wholly inside or wholly outside each range.
    """

    __slots__ = ("count", "ends")

    def __init__(self, keys: Iterable[NumKey]) -> None:
        ends: set[float] = set()
        for lo, _, hi, _ in keys:
            ends.add(lo)
            ends.add(hi)
        self.ends = sorted(ends)
        self.count = 2 * len(self.ends) + 1

    def span(self, key: NumKey) -> tuple[int, int]:
        """First and last region of a range; first > last when it holds no number."""
        lo, lo_incl, hi, hi_incl = key
        a = bisect_left(self.ends, lo)
        b = bisect_left(self.ends, hi)
        return (2 * a + 1 if lo_incl else 2 * a + 2), (2 * b + 1 if hi_incl else 2 * b)


def mean_cover(keys: Sequence[NumKey]) -> Callable[[NumKey], float]:
    """For choosing anchors: ``mean(key)`` is how many of `keys` hold a number of that range,
    averaged over its regions (1.0 for disjoint ranges, about n/2 for n nested ones)."""
    regions = _Regions(keys)
    diff = [0] * (regions.count + 1)
    for key in keys:
        first, last = regions.span(key)
        if first <= last:
            diff[first] += 1
            diff[last + 1] -= 1
    prefix = [0] * (regions.count + 1)
    running = 0
    for i in range(regions.count):
        running += diff[i]
        prefix[i + 1] = prefix[i] + running

    def mean(key: NumKey) -> float:
        first, last = regions.span(key)
        if first > last:
            return 0.0
        return (prefix[last + 1] - prefix[first]) / (last - first + 1)

    return mean


class RangeIndex:
    """Numeric ranges of one field, each with an id; :meth:`lookup` yields the ids of every
    range holding a number without testing ranges one by one.

    One bisect over the sorted endpoints finds the number's elementary region (see
    :class:`_Regions`). When the ranges overlap little (their region counts add up to at most
    `flat_limit`, by default 8 per range + 64) every region keeps the list of ranges covering
    it: one list per lookup. Otherwise (many nested ranges, where those lists would grow
    quadratically) a segment tree over the regions keeps each range in O(log regions) nodes
    and a number collects the nodes on one leaf-to-root path. Either way every id yielded
    holds the number, so the cost is O(log ranges + ranges that hold it).
    """

    __slots__ = ("_ends", "_size", "_table", "flat")

    def __init__(self, ranges: Sequence[tuple[NumKey, int]], flat_limit: int | None = None) -> None:
        regions = _Regions(key for key, _ in ranges)
        spans = [(*regions.span(key), rid) for key, rid in ranges]
        spans = [s for s in spans if s[0] <= s[1]]
        if flat_limit is None:
            flat_limit = 8 * len(spans) + 64
        self.flat = sum(last - first + 1 for first, last, _ in spans) <= flat_limit
        self._ends = regions.ends
        table: list[list[int] | None]
        if self.flat:
            self._size = 0
            table = [None] * regions.count
            for first, last, rid in spans:
                for r in range(first, last + 1):
                    _add(table, r, rid)
        else:
            self._size = 1 << (regions.count - 1).bit_length()
            table = [None] * (2 * self._size)
            for first, last, rid in spans:
                lo, hi = first + self._size, last + self._size + 1
                while lo < hi:  # the canonical cover of [first, last]
                    if lo & 1:
                        _add(table, lo, rid)
                        lo += 1
                    if hi & 1:
                        hi -= 1
                        _add(table, hi, rid)
                    lo >>= 1
                    hi >>= 1
        self._table = table

    def lookup(self, v: float, out: set[int]) -> int:
        """Add to `out` the ids of the ranges holding `v`; returns the lists consulted."""
        if v != v:  # NaN is in no range
            return 0
        ends = self._ends
        i = bisect_left(ends, v)
        region = 2 * i + 1 if i < len(ends) and ends[i] == v else 2 * i
        table = self._table
        if not self._size:
            bucket = table[region]
            if bucket:
                out.update(bucket)
            return 1
        node = region + self._size
        probes = 0
        while node:
            bucket = table[node]
            if bucket:
                out.update(bucket)
            probes += 1
            node >>= 1
        return probes


def _add(table: list[list[int] | None], slot: int, rid: int) -> None:
    bucket = table[slot]
    if bucket is None:
        table[slot] = [rid]
    elif bucket[-1] != rid:
        bucket.append(rid)
