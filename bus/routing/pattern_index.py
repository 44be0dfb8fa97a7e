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
   no condition at all (`{}`) are kept in an "always check" list.
3. Each distinct `$xpath` expression (with its namespace map) is a field of its own, with
   the same kind of per-field index, so an alternative can be anchored on an XPath leaf.
   Evaluating that field needs the parsed payload, so the field is *gated*: it is evaluated
   only when the best JSON leaf of some alternative anchored on it holds (the gates are
   another anchor index, over field ids), or always when such an alternative has no JSON
   leaf. Ties between a JSON and an XPath anchor go to the JSON one.
4. For an event, only the paths some pattern mentions are flattened (path -> leaf values,
   arrays expanded) once; anchor lookups yield the candidate alternatives, and only those are
   checked condition by condition. An anchor is a necessary condition, so this is exact. The
   payload is parsed at most once and each XPath field evaluated at most once per event,
   both on first use (:class:`_XmlState`). :meth:`PatternIndex.work` counts that work (index
   probes, full checks, XPath evaluations) for tests.

The semantics (documented in docs/routing.md) live in the reference evaluator
:func:`reference_match`; the index is tested against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .pattern_anchors import Anchors, Path, XField
from .pattern_compile import (
    RANK,
    LeafFn,
    NumKey,
    compile_leaf,
    is_weak,
    mean_cover,
)
from .pattern_reference import (
    Conj,
    expand,
    reference_match,
    scalars,
    xpath_values,
)
from .pattern_validate import PatternError, compile_xpath, validate_pattern

__all__ = ["MatchWork", "PatternError", "PatternIndex", "reference_match", "validate_pattern"]

#: Where an anchor lives: an event path, or the id of an XPath field (an int).
Where = Path | int
#: A possible anchor of an alternative: where, and the index entries of one leaf there.
Option = tuple[Where, list[Any]]
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
    xpaths: list[tuple[int, LeafFn]]  # (XPath field id, leaf test)
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
    #: Distinct XPath expressions evaluated (each at most once per event).
    xpath_evals: int = 0


_UNSET: Any = object()


class _XmlState:
    """The XML side of matching one event: the payload is parsed (``load()``) at most once
    and each XPath field evaluated at most once, both on first use. ``root`` None means no
    XML payload: then no `$xpath` condition holds."""

    __slots__ = ("_fields", "_load", "_root", "_values", "evals")

    def __init__(self, load: Callable[[], etree._Element | None], fields: list[XField]) -> None:
        self._load = load
        self._fields = fields
        self._root: Any = _UNSET
        self._values: dict[int, list[Any]] = {}
        self.evals = 0

    def root(self) -> etree._Element | None:
        if self._root is _UNSET:
            self._root = self._load()
        root: etree._Element | None = self._root
        return root

    def values(self, fid: int) -> list[Any]:
        """The values of XPath field `fid`; call only once :meth:`root` is not None."""
        got = self._values.get(fid)
        if got is None:
            got = self._values[fid] = xpath_values(self._fields[fid].xp, self._root)
            self.evals += 1
        return got

    def holds(self, conds: list[tuple[int, LeafFn]]) -> bool:
        """Do all `$xpath` conditions of an alternative hold? Fields already evaluated are
        tested first, so a failing one spares evaluating the others."""
        if self.root() is None:
            return False
        pending: list[tuple[int, LeafFn]] = []
        for fid, fn in conds:
            got = self._values.get(fid)
            if got is None:
                pending.append((fid, fn))
            elif not fn(got):
                return False
        return all(fn(self.values(fid)) for fid, fn in pending)


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
        self._anchors = Anchors()  # ids: alternatives
        self._gates = Anchors()  # ids: XPath fields, evaluated when their gate holds
        self._xfields: list[XField] = []
        self._trie = _Trie(())
        xfield_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        options: list[list[Option]] = []
        for pid, pattern in enumerate(patterns):
            for conj in expand(pattern):
                options.append(self._add_alt(pid, conj, xfield_ids))
        self._choose_anchors(options)
        self._anchors.freeze()
        self._gates.freeze()
        for xfield in self._xfields:
            xfield.freeze()
        self._gated = bool(self._gates.paths or self._gates.always)
        self.needs_xml = any(alt.xpaths for alt in self._alts)

    def _choose_anchors(self, options: list[list[Option]]) -> None:
        """Anchor each alternative on the leaf whose index buckets are least shared.

        A route's exact `country` is a poor anchor when a thousand routes use the same
        country; a unique `type` or source prefix is a good one, and so is a numeric range
        few other ranges overlap. Anchors that most events satisfy (some value, no value,
        any string) are used only when nothing better exists. Ties go to JSON fields (an
        XPath field must be evaluated first), then to cheaper kinds.
        """
        usage: Counter[Any] = Counter()
        ranges: dict[Where, list[NumKey]] = {}
        for alt_options in options:
            for where, entries in alt_options:
                for kind, key in entries:
                    if kind == "num":
                        ranges.setdefault(where, []).append(key)
                    else:
                        usage[where, kind, key] += 1
        overlap = {where: mean_cover(keys) for where, keys in ranges.items()}

        def cost(option: Option) -> tuple[bool, float, bool, int]:
            where, entries = option
            total = sum(
                overlap[where](key) if kind == "num" else usage[where, kind, key]
                for kind, key in entries
            )
            weak = any(is_weak(kind, key) for kind, key in entries)
            return weak, total, type(where) is int, max(RANK[kind] for kind, _ in entries)

        gated: set[Any] = set()
        for alt_id, alt_options in enumerate(options):
            if not alt_options:
                self._anchors.always.append(alt_id)
                continue
            where, entries = min(alt_options, key=cost)
            if type(where) is int:
                index = self._xfields[where].index
                for kind, key in entries:
                    index.add(kind, key, alt_id)
                json_options = [o for o in alt_options if type(o[0]) is not int]
                self._gate(where, min(json_options, key=cost) if json_options else None, gated)
            else:
                assert isinstance(where, tuple)
                self._anchors.add(where, entries, alt_id)

    def _gate(self, fid: int, option: Option | None, gated: set[Any]) -> None:
        """Evaluate XPath field `fid` when `option` (a JSON leaf of an alternative anchored
        on the field) holds, or for every XML event when there is none. `gated` holds the
        gates already made: many alternatives typically share one (a common `type`)."""
        if option is None:
            if fid not in gated:
                gated.add(fid)
                self._gates.always.append(fid)
            return
        path, entries = option
        assert isinstance(path, tuple)
        fresh = [(kind, key) for kind, key in entries if (path, kind, key, fid) not in gated]
        gated.update((path, kind, key, fid) for kind, key in fresh)
        if fresh:
            self._gates.add(path, fresh, fid)

    def _add_alt(
        self,
        pid: int,
        conj: Conj,
        xfield_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int],
    ) -> list[Option]:
        """Compile one alternative; returns its possible anchors (where, index entries)."""
        flat: list[tuple[Path, LeafFn]] = []
        anchors: list[Option] = []
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
                    anchors.append((path, entries))
            for key, kid in node.kids.items():
                out.kids.append((key, build(kid, (*prefix, key))))
            return out

        tree = build(conj, ())
        xpaths: list[tuple[int, LeafFn]] = []
        ns_key = tuple(sorted(self._namespaces.items()))
        for expr, leaf in conj.xpath:
            fid = xfield_ids.get((expr, ns_key))
            if fid is None:
                fid = xfield_ids[expr, ns_key] = len(self._xfields)
                self._xfields.append(XField(compile_xpath(expr, self._namespaces)))
            fn, _, entries = compile_leaf(leaf, xml=True)
            xpaths.append((fid, fn))
            anchors.append((fid, entries))
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
        candidates, _ = self._anchors.candidates(flat, arrays)
        xstate = None
        if xml is not None and self.needs_xml:
            xstate = _XmlState(xml, self._xfields)
            if self._gated:
                self._xpath_candidates(flat, arrays, xstate, candidates)
        return self._check(candidates, event, flat, arrays, xstate)

    def work(
        self,
        event: Mapping[str, Any],
        xml: Callable[[], etree._Element | None] | None = None,
    ) -> MatchWork:
        """Match `event` as :meth:`matches` does and count the work: the index probes, the
        alternatives checked in full and the XPath evaluations. Tests use it to show that the
        work stays flat as patterns are added, without timing anything."""
        flat: dict[Path, list[Any]] = {}
        arrays: set[Path] = set()
        self._flatten(event, self._trie, flat, arrays)
        candidates, probes = self._anchors.candidates(flat, arrays)
        xstate = None
        if xml is not None and self.needs_xml:
            xstate = _XmlState(xml, self._xfields)
            if self._gated:
                probes += self._xpath_candidates(flat, arrays, xstate, candidates)
        matched = self._check(candidates, event, flat, arrays, xstate)
        return MatchWork(
            probes=probes,
            checked=len(candidates),
            matched=matched,
            xpath_evals=xstate.evals if xstate is not None else 0,
        )

    def _xpath_candidates(
        self,
        flat: dict[Path, list[Any]],
        arrays: set[Path],
        xstate: _XmlState,
        out: set[int],
    ) -> int:
        """Add the alternatives anchored on XPath fields whose anchor holds; returns probes.

        Only the fields whose gate holds are evaluated, and nothing is parsed when none does.
        """
        fids, probes = self._gates.candidates(flat, arrays)
        if not fids or xstate.root() is None:
            return probes
        xfields = self._xfields
        for fid in fids:
            probes += xfields[fid].lookup(xstate.values(fid), out)
        return probes

    def _check(
        self,
        candidates: set[int],
        event: Mapping[str, Any],
        flat: dict[Path, list[Any]],
        arrays: set[Path],
        xstate: _XmlState | None,
    ) -> list[int]:
        """Check each candidate alternative condition by condition; sorted pattern ids."""
        matched: set[int] = set()
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
            if alt.xpaths and (xstate is None or not xstate.holds(alt.xpaths)):
                continue
            matched.add(alt.pid)
        return sorted(matched)
