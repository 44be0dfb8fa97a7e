"""Content-based routing patterns (AWS EventBridge event-pattern semantics), compiled into an index.

How :class:`PatternIndex` keeps the cost of a match independent of the number of patterns:

1. Every pattern is expanded into `$or`-free alternatives, and each alternative into leaf
   conditions ``(path, predicate)``.
2. Each alternative is *anchored* on one leaf whose index entries cover every way it can
   match (exact values, equals-ignore-case, prefix, suffix, a wildcard's literal head or
   tail, numeric ranges, CIDR networks, "has a value", "has no value"): the one whose
   entries the fewest other alternatives share, so a unique `type` wins over a `country` a
   thousand routes use; anchors most events satisfy are a last resort. Anchors live in
   per-path hash maps (value -> alternatives; prefixes and suffixes are looked up by the few
   distinct lengths used on that path, CIDR networks by prefix length) and a per-path
   :class:`RangeIndex` (one bisect finds every range holding a number). Alternatives with
   no field condition (`{}`, `$xpath` only) are kept in an "always check" list.
3. For an event, only the paths some pattern mentions are flattened (path -> leaf values,
   arrays expanded) once; anchor lookups yield the candidate alternatives, and only those are
   checked condition by condition. An anchor is a necessary condition, so this is exact.
   :meth:`PatternIndex.work` counts that work (index probes, full checks) for tests.

The semantics (documented in docs/routing.md) live in the reference evaluator
:func:`reference_match`; the index is tested against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .pattern_compile import (
    RANK,
    LeafFn,
    NumKey,
    RangeIndex,
    cidr_key,
    compile_leaf,
    is_weak,
    mean_cover,
    parse_ip,
)
from .pattern_reference import Conj, expand, reference_match, scalars, xpath_values
from .pattern_validate import PatternError, compile_xpath, validate_pattern

__all__ = ["MatchWork", "PatternError", "PatternIndex", "reference_match", "validate_pattern"]

Path = tuple[str, ...]
_EMPTY: list[Any] = []


@dataclass
class _Node:
    """An object level of an alternative, for array-consistent (per element) checking."""

    leaves: list[tuple[str, LeafFn]] = field(default_factory=list)
    kids: list[tuple[str, _Node]] = field(default_factory=list)


@dataclass
class _Alt:
    pid: int
    flat: list[tuple[Path, LeafFn]]
    xpaths: list[tuple[etree.XPath, LeafFn]]
    tree: _Node
    # Object paths that hold 2+ leaf conditions, or an absence-tolerant one, below them. Only
    # when the event has an array of objects at one of these does per-element checking differ
    # from checking the flattened values.
    tree_prefixes: frozenset[Path]


@dataclass(frozen=True)
class MatchWork:
    """What matching one event took, counted in operations rather than time."""

    #: Index lists and keys consulted (hash probes, range-index lists, absence checks).
    probes: int
    #: Alternatives checked condition by condition (the candidates).
    checked: int
    #: The ids of the patterns that matched, as :meth:`PatternIndex.matches` returns them.
    matched: list[int]


@dataclass
class _PathIndex:
    """The anchors on one event path. Each lookup returns how many index lists or keys it
    consulted (for :meth:`PatternIndex.work`), a count that must not grow with the number of
    patterns."""

    eq: dict[Any, list[int]] = field(default_factory=dict)
    eqi: dict[str, list[int]] = field(default_factory=dict)
    pre: dict[str, list[int]] = field(default_factory=dict)
    prei: dict[str, list[int]] = field(default_factory=dict)
    suf: dict[str, list[int]] = field(default_factory=dict)
    sufi: dict[str, list[int]] = field(default_factory=dict)
    cidr: dict[tuple[int, int, int], list[int]] = field(default_factory=dict)
    present: list[int] = field(default_factory=list)  # the path has some leaf value
    absent: list[int] = field(default_factory=list)  # the path may have none
    lens: dict[str, tuple[int, ...]] = field(default_factory=dict)
    cidr_lens: tuple[tuple[int, int], ...] = ()  # (ip version, prefix length) in use
    ranges: list[tuple[NumKey, int]] = field(default_factory=list)
    num: RangeIndex | None = None

    def add(self, kind: str, key: Any, alt: int) -> None:
        if kind == "num":
            self.ranges.append((key, alt))
            return
        bucket: list[int]
        if kind in ("present", "absent"):
            bucket = getattr(self, kind)
        else:
            table: dict[Any, list[int]] = getattr(self, kind)
            bucket = table.setdefault(key, [])
        if not bucket or bucket[-1] != alt:
            bucket.append(alt)

    def freeze(self) -> None:
        for kind in ("pre", "prei", "suf", "sufi"):
            self.lens[kind] = tuple(sorted({len(k) for k in getattr(self, kind)}))
        self.cidr_lens = tuple(sorted({(version, plen) for version, plen, _ in self.cidr}))
        if self.ranges:
            self.num = RangeIndex(self.ranges)
        self.ranges = []

    def lookup(self, v: Any, out: set[int]) -> int:
        """Add the alternatives anchored on a value that `v` satisfies; returns probes."""
        if type(v) is str:
            hit = self.eq.get(v)
            if hit:
                out.update(hit)
            probes = 1
            if self.eqi or self.prei or self.sufi:
                low = v.lower()
                hit = self.eqi.get(low)
                if hit:
                    out.update(hit)
                probes += 1 + self._affixes(low, "prei", "sufi", out)
            if self.cidr:
                probes += self._cidr(v, out)
            return probes + self._affixes(v, "pre", "suf", out)
        t = type(v)
        if t is bool:
            hit = self.eq.get(("b", v))
        elif v is None:
            hit = self.eq.get(("z",))
        else:
            hit = self.eq.get(("n", v))
            if self.num is not None:
                if hit:
                    out.update(hit)
                return 1 + self.num.lookup(v, out)
        if hit:
            out.update(hit)
        return 1

    def _affixes(self, v: str, pre: str, suf: str, out: set[int]) -> int:
        """Prefix and suffix anchors: one hash probe per distinct affix length in use."""
        probes = 0
        table = getattr(self, pre)
        if table:
            n = len(v)
            for length in self.lens[pre]:
                if length > n:
                    break
                hit = table.get(v[:length])
                probes += 1
                if hit:
                    out.update(hit)
        table = getattr(self, suf)
        if table:
            n = len(v)
            for length in self.lens[suf]:
                if length > n:
                    break
                hit = table.get(v[n - length :])
                probes += 1
                if hit:
                    out.update(hit)
        return probes

    def _cidr(self, v: str, out: set[int]) -> int:
        """CIDR anchors: one hash probe per (version, prefix length) in use."""
        addr = parse_ip(v)
        if addr is None:
            return 1
        number, version = int(addr), addr.version
        probes = 1
        for net_version, plen in self.cidr_lens:
            if net_version == version:
                hit = self.cidr.get(cidr_key(version, plen, number))
                probes += 1
                if hit:
                    out.update(hit)
        return probes


class _Trie:
    """The event paths some pattern reads; flattening walks only these."""

    __slots__ = ("children", "leaf", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.leaf = False
        self.children: dict[str, _Trie] = {}

    def add(self, path: Path) -> None:
        node = self
        for i, key in enumerate(path):
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Trie(path[: i + 1])
            node = child
        node.leaf = True


def _objects(value: Any, out: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _objects(item, out)
    return out


def _tree_object(node: _Node, obj: Mapping[str, Any]) -> bool:
    for key, fn in node.leaves:
        if not fn(scalars(obj[key]) if key in obj else _EMPTY):
            return False
    for key, kid in node.kids:
        objs = _objects(obj.get(key), [])
        if not objs:
            objs = [{}]
        if not any(_tree_object(kid, o) for o in objs):
            return False
    return True


class PatternIndex:
    """Many patterns compiled into one index; :meth:`matches` costs about the same for 10 or
    10,000 patterns as long as patterns carry some indexable condition (see module doc)."""

    needs_xml: bool

    def __init__(
        self,
        patterns: Sequence[Mapping[str, Any]],
        namespaces: Mapping[str, str] | None = None,
    ) -> None:
        """Compile patterns (already validated; raise PatternError otherwise). Position i in
        `patterns` is pattern id i. `namespaces` maps prefixes used in `$xpath` expressions."""
        self._namespaces = dict(namespaces or {})
        problems: list[str] = []
        for i, pattern in enumerate(patterns):
            problems += validate_pattern(pattern, f"patterns[{i}]", namespaces=self._namespaces)
        if problems:
            raise PatternError(problems)

        self._alts: list[_Alt] = []
        self._always: list[int] = []
        self._absent: list[tuple[Path, frozenset[Path], list[int]]] = []
        self._paths: dict[Path, _PathIndex] = {}
        self._trie = _Trie(())
        xpath_cache: dict[str, etree.XPath] = {}
        options: list[list[tuple[Path, list[Any]]]] = []
        for pid, pattern in enumerate(patterns):
            for conj in expand(pattern):
                options.append(self._add_alt(pid, conj, xpath_cache))
        self._choose_anchors(options)
        for pidx in self._paths.values():
            pidx.freeze()
        # Absence anchors: (path, the proper prefixes of path, alternatives). Flattening
        # merges array elements, so under an array a path can be absent from one element
        # while the merged values have it: then absence is decided per element, later.
        self._absent = [
            (path, frozenset(path[:i] for i in range(1, len(path))), pidx.absent)
            for path, pidx in self._paths.items()
            if pidx.absent
        ]
        self.needs_xml = any(alt.xpaths for alt in self._alts)
        self.size = len(patterns)

    def _choose_anchors(self, options: list[list[tuple[Path, list[Any]]]]) -> None:
        """Anchor each alternative on the leaf whose index buckets are least shared.

        A route's exact `country` is a poor anchor when a thousand routes use the same
        country; a unique `type` or source prefix is a good one, and so is a numeric range
        few other ranges overlap. Anchors that most events satisfy (some value, no value,
        any string) are used only when nothing better exists. Ties go to cheaper kinds.
        """
        usage: Counter[Any] = Counter()
        ranges: dict[Path, list[NumKey]] = {}
        for alt_options in options:
            for path, entries in alt_options:
                for kind, key in entries:
                    if kind == "num":
                        ranges.setdefault(path, []).append(key)
                    else:
                        usage[path, kind, key] += 1
        overlap = {path: mean_cover(keys) for path, keys in ranges.items()}

        def cost(option: tuple[Path, list[Any]]) -> tuple[bool, float, int]:
            path, entries = option
            total = sum(
                overlap[path](key) if kind == "num" else usage[path, kind, key]
                for kind, key in entries
            )
            weak = any(is_weak(kind, key) for kind, key in entries)
            return weak, total, max(RANK[kind] for kind, _ in entries)

        for alt_id, alt_options in enumerate(options):
            if not alt_options:
                self._always.append(alt_id)
                continue
            path, entries = min(alt_options, key=cost)
            pidx = self._paths.get(path)
            if pidx is None:
                pidx = self._paths[path] = _PathIndex()
            for kind, key in entries:
                pidx.add(kind, key, alt_id)

    def _add_alt(
        self, pid: int, conj: Conj, xpath_cache: dict[str, etree.XPath]
    ) -> list[tuple[Path, list[Any]]]:
        """Compile one alternative; returns its possible anchors (path, index entries)."""
        flat: list[tuple[Path, LeafFn]] = []
        anchors: list[tuple[Path, list[Any]]] = []
        under: dict[Path, int] = {}  # proper prefix -> 2 leaves below, or a nullable one

        def build(node: Conj, prefix: Path) -> _Node:
            out = _Node()
            for key, leaves in node.leaves.items():
                path = (*prefix, key)
                self._trie.add(path)
                for leaf in leaves:
                    fn, nullable, entries = compile_leaf(leaf)
                    flat.append((path, fn))
                    out.leaves.append((key, fn))
                    for i in range(1, len(path)):
                        under[path[:i]] = under.get(path[:i], 0) + (2 if nullable else 1)
                    if entries:
                        anchors.append((path, entries))
            for key, kid in node.kids.items():
                out.kids.append((key, build(kid, (*prefix, key))))
            return out

        tree = build(conj, ())
        xpaths: list[tuple[etree.XPath, LeafFn]] = []
        for expr, leaf in conj.xpath:
            xp = xpath_cache.get(expr)
            if xp is None:
                xp = xpath_cache[expr] = compile_xpath(expr, self._namespaces)
            xpaths.append((xp, compile_leaf(leaf, xml=True)[0]))
        self._alts.append(
            _Alt(
                pid=pid,
                flat=flat,
                xpaths=xpaths,
                tree=tree,
                tree_prefixes=frozenset(p for p, n in under.items() if n >= 2),
            )
        )
        return anchors

    def _flatten(
        self,
        obj: Mapping[str, Any],
        node: _Trie,
        flat: dict[Path, list[Any]],
        arrays: set[Path],
    ) -> None:
        children = node.children
        if len(children) > len(obj):
            pairs = [(k, children[k]) for k in obj if k in children]
        else:
            pairs = [(k, c) for k, c in children.items() if k in obj]
        for key, child in pairs:
            v = obj[key]
            if isinstance(v, Mapping):
                if child.children:
                    self._flatten(v, child, flat, arrays)
                continue
            if type(v) is list:
                if child.leaf:
                    vals = scalars(v)
                    if vals:
                        flat.setdefault(child.path, []).extend(vals)
                if child.children:
                    objs = _objects(v, [])
                    if objs:
                        arrays.add(child.path)
                        for o in objs:
                            self._flatten(o, child, flat, arrays)
                continue
            if child.leaf:
                got = flat.get(child.path)
                if got is None:
                    flat[child.path] = [v]
                else:
                    got.append(v)

    def matches(
        self,
        event: Mapping[str, Any],
        xml: Callable[[], etree._Element | None] | None = None,
    ) -> list[int]:
        """Sorted ids of every pattern that matches `event` (the CloudEvents JSON form).

        `xml` is called at most once, only if a candidate pattern needs XPath; it returns the
        parsed payload root or None (not XML / unparseable: `$xpath` conditions do not match).
        """
        flat: dict[Path, list[Any]] = {}
        arrays: set[Path] = set()
        self._flatten(event, self._trie, flat, arrays)
        candidates, _ = self._candidates(flat, arrays)
        return self._check(candidates, event, flat, arrays, xml)

    def work(
        self,
        event: Mapping[str, Any],
        xml: Callable[[], etree._Element | None] | None = None,
    ) -> MatchWork:
        """Match `event` as :meth:`matches` does and count the work: the index probes and the
        alternatives checked in full. Tests use it to show that the work stays flat as
        patterns are added, without timing anything."""
        flat: dict[Path, list[Any]] = {}
        arrays: set[Path] = set()
        self._flatten(event, self._trie, flat, arrays)
        candidates, probes = self._candidates(flat, arrays)
        matched = self._check(candidates, event, flat, arrays, xml)
        return MatchWork(probes=probes, checked=len(candidates), matched=matched)

    def _candidates(
        self, flat: dict[Path, list[Any]], arrays: set[Path]
    ) -> tuple[set[int], int]:
        """The alternatives whose anchor the event satisfies, and the probes it took."""
        candidates: set[int] = set(self._always)
        probes = 0
        paths = self._paths
        for path, values in flat.items():
            pidx = paths.get(path)
            if pidx is not None:
                if pidx.present:
                    candidates.update(pidx.present)
                    probes += 1
                for v in values:
                    probes += pidx.lookup(v, candidates)
        for path, above, alts in self._absent:
            probes += 1
            if path not in flat or (arrays and not arrays.isdisjoint(above)):
                candidates.update(alts)
        return candidates, probes

    def _check(
        self,
        candidates: set[int],
        event: Mapping[str, Any],
        flat: dict[Path, list[Any]],
        arrays: set[Path],
        xml: Callable[[], etree._Element | None] | None,
    ) -> list[int]:
        """Check each candidate alternative condition by condition; sorted pattern ids."""
        matched: set[int] = set()
        xml_state: list[Any] = []  # [root] once xml() has been called
        alts = self._alts
        for alt_id in candidates:
            alt = alts[alt_id]
            if alt.pid in matched:
                continue
            if arrays and alt.tree_prefixes and not alt.tree_prefixes.isdisjoint(arrays):
                if not _tree_object(alt.tree, event):
                    continue
            elif not all(fn(flat.get(path, _EMPTY)) for path, fn in alt.flat):
                continue
            if alt.xpaths:
                if not xml_state:
                    xml_state.append(xml() if xml is not None else None)
                root = xml_state[0]
                if root is None or not all(fn(xpath_values(xp, root)) for xp, fn in alt.xpaths):
                    continue
            matched.add(alt.pid)
        return sorted(matched)
