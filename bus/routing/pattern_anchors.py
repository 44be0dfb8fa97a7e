"""The anchor index of :class:`~esb.bus.routing.pattern_index.PatternIndex`: for each event
path (or XPath field), hash maps and a range index from leaf values to the ids anchored on them,
so finding the candidates for an event costs a few probes per value, not a loop over patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .pattern_compile import NumKey, RangeIndex, cidr_key, parse_ip
from .pattern_reference import parse_xml_number

Path = tuple[str, ...]


@dataclass
class PathIndex:
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


@dataclass
class Anchors:
    """Anchors on event paths for a set of ids: alternatives, or (for the gates) XPath fields.

    ``always`` ids are candidates for every event; ``absent`` holds the absence anchors as
    (path, the proper prefixes of path, ids), built by :meth:`freeze`.
    """

    paths: dict[Path, PathIndex] = field(default_factory=dict)
    always: list[int] = field(default_factory=list)
    absent: list[tuple[Path, frozenset[Path], list[int]]] = field(default_factory=list)

    def add(self, path: Path, entries: list[Any], ident: int) -> None:
        pidx = self.paths.get(path)
        if pidx is None:
            pidx = self.paths[path] = PathIndex()
        for kind, key in entries:
            pidx.add(kind, key, ident)

    def freeze(self) -> None:
        for pidx in self.paths.values():
            pidx.freeze()
        # Flattening merges array elements, so under an array a path can be absent from one
        # element while the merged values have it: then absence is decided per element, later.
        self.absent = [
            (path, frozenset(path[:i] for i in range(1, len(path))), pidx.absent)
            for path, pidx in self.paths.items()
            if pidx.absent
        ]

    def candidates(self, flat: dict[Path, list[Any]], arrays: set[Path]) -> tuple[set[int], int]:
        """The ids whose anchor the event satisfies, and the probes it took."""
        candidates: set[int] = set(self.always)
        probes = 0
        paths = self.paths
        for path, values in flat.items():
            pidx = paths.get(path)
            if pidx is not None:
                if pidx.present:
                    candidates.update(pidx.present)
                    probes += 1
                for v in values:
                    probes += pidx.lookup(v, candidates)
        for path, above, ids in self.absent:
            probes += 1
            if path not in flat or (arrays and not arrays.isdisjoint(above)):
                candidates.update(ids)
        return candidates, probes


@dataclass
class XField:
    """One distinct XPath expression (text and namespace map): a field of the index whose
    values are those of its result (:func:`xpath_values`), with the alternatives anchored on
    it. XML text also stands for the number it spells, so a string value is looked up as
    well as that number when some anchor here is a number."""

    xp: etree.XPath
    index: PathIndex = field(default_factory=PathIndex)
    numeric: bool = False

    def freeze(self) -> None:
        index = self.index
        index.freeze()
        self.numeric = index.num is not None or any(type(k) is not str for k in index.eq)

    def lookup(self, values: list[Any], out: set[int]) -> int:
        """Add the alternatives anchored on a value of `values` (or on "no value"); probes."""
        index = self.index
        if not values:
            out.update(index.absent)
            return 1
        probes = 0
        if index.present:
            out.update(index.present)
            probes += 1
        for v in values:
            probes += index.lookup(v, out)
            if self.numeric and type(v) is str:
                n = parse_xml_number(v)
                if n is not None:
                    probes += index.lookup(n, out)
        return probes
