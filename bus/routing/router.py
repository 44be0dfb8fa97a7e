"""A compiled route set: one pattern index for the whole set, transformer chains built once.

Matching every route is one walk over the envelope (the index), not a loop over routes, so its
cost does not grow with the number of routes. Priorities and ``exclusive`` then order and prune
the (few) matches.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError
from esb.bus.routing.enrich import Enricher
from esb.bus.routing.model import CacheSpec
from esb.bus.routing.pattern_index import PatternIndex
from esb.bus.routing.pattern_validate import pattern_problems
from esb.bus.routing.routeset import PlacedRoute, RouteSet, sort_problems
from esb.bus.routing.split import Splitter
from esb.bus.xmlsafe import DEFAULT_LIMITS, XmlLimits, parse_xml
from esb.transformers.chain import Chain, build_chain


@dataclass(frozen=True)
class Leg:
    """One destination of one route, with the steps run for it alone."""

    destination: str
    chain: Chain


@dataclass(frozen=True)
class ReplyLeg:
    """A request/reply route's way back: how long the caller waits, and the steps that turn
    the destination's answer into the caller's format (run on the caller's instance)."""

    timeout: float
    chain: Chain
    #: Successful answers kept and served again (``reply.cache`` / ``enrich.cache``).
    cache: CacheSpec | None = None


@dataclass(frozen=True)
class CompiledRoute:
    name: str
    order: int
    priority: int
    exclusive: bool
    chain: Chain
    legs: tuple[Leg, ...]
    reply: ReplyLeg | None = None
    #: The route's ``split:``, when it has one.
    split: Splitter | None = None
    #: The route's ``enrich:``, when it has one.
    enrich: Enricher | None = None

    @property
    def chains(self) -> list[Chain]:
        """Every chain the plan runs for this route (not the reply leg)."""
        out = [self.chain, *(leg.chain for leg in self.legs)]
        if self.enrich is not None:
            out += [self.enrich.request, self.enrich.merge]
        return out


class Router:
    """Decides, for one envelope, which routes fire. Immutable: a deploy swaps whole routers."""

    def __init__(self, routes: list[CompiledRoute], index: PatternIndex, *, version: int = 0,
                 digest: str = "", max_xml_bytes: int = 10 * 1024 * 1024,
                 patterns: list[dict[str, Any]] | None = None,
                 xml_limits: XmlLimits = DEFAULT_LIMITS) -> None:
        self.routes = routes
        self.index = index
        self.version = version
        self.digest = digest
        self._max_xml = max_xml_bytes
        self._xml_limits = xml_limits
        #: An enrichment's request or merge step waits: those run in place, so such a
        #: router is planned in a thread (see :func:`~esb.bus.routing.dispatch.plan_async`).
        self.enrich_waits = any(r.enrich.request.waits or r.enrich.merge.waits
                                for r in routes if r.enrich is not None)
        unconditional = all(not p for p in patterns) if patterns is not None else False
        self._match_all = self._order([*routes]) if routes and unconditional else None
        self._by_endpoint = _by_endpoint(routes, patterns) if not unconditional else None

    def match_after(self, envelope: Envelope, route: CompiledRoute) -> list[CompiledRoute]:
        """The routes after ``route`` in firing order (lower priority, or equal and later in
        the files) that fire for ``envelope`` — what an enricher without ``to`` hands its
        enriched envelope to."""
        fast = self.fired_for(envelope.esbendpoint or "")
        # (when matching ignores the payload, the same routes as before)
        hits = list(fast) if fast is not None else \
            [self.routes[i] for i in self._hits(envelope)]
        after = (-route.priority, route.order)
        return self._order([r for r in hits if (-r.priority, r.order) > after])

    def match(self, envelope: Envelope, event: Mapping[str, Any] | None = None
              ) -> list[CompiledRoute]:
        """The routes that fire, highest priority first (file order among equals)."""
        if not self.routes:
            return []
        # no route has a condition beyond ``from``: nothing to evaluate (a dict lookup)
        fast = self.fired_for(envelope.esbendpoint)
        if fast is not None:
            return fast
        ids = self._hits(envelope, event)
        if not ids:
            return []
        return self._order([self.routes[i] for i in ids])

    def _hits(self, envelope: Envelope, event: Mapping[str, Any] | None = None) -> list[int]:
        """Indexes of the routes whose pattern matches (unordered, nothing pruned)."""
        event = event if event is not None else envelope.match_view()
        xml: Callable[[], Any] | None = None
        if self.index.needs_xml and envelope.is_xml:
            def xml() -> Any:
                try:
                    return parse_xml(envelope.data, max_bytes=self._max_xml,
                                     limits=self._xml_limits, shared=True)
                except Exception:
                    return None
        return self.index.matches(event, xml)

    def fired_for(self, endpoint: str | None) -> list[CompiledRoute] | None:
        """The routes that fire for anything entering through ``endpoint``, when that alone
        decides (no route has a condition beyond ``from``); ``None`` when the envelope must
        be matched (:meth:`match`)."""
        if self._match_all is not None:
            return self._match_all
        if self._by_endpoint is not None:
            fired = self._by_endpoint.get(endpoint)
            return fired if fired is not None else self._by_endpoint[None]
        return None

    @staticmethod
    def _order(hits: list[CompiledRoute]) -> list[CompiledRoute]:
        """Firing order: priority (highest first), then file order. First-match-wins: the
        first exclusive route in that order fires after the routes ahead of it, and no route
        after it (lower priority, or equal priority later in file order) fires."""
        if len(hits) > 1:
            hits.sort(key=lambda r: (-r.priority, r.order))
        for i, route in enumerate(hits):
            if route.exclusive:
                return hits[:i + 1]
        return hits


def _by_endpoint(routes: list[CompiledRoute], patterns: list[dict[str, Any]] | None
                 ) -> dict[str | None, list[CompiledRoute]] | None:
    """When no route has a condition beyond ``from`` (the common pass-through and fan-out
    set-ups), the routes that fire for each endpoint, in firing order — computed once, so
    matching is a dict lookup. ``None`` when any route matches on anything else."""
    if not routes or patterns is None:
        return None
    endpoints: set[str] = set()
    for pattern in patterns:
        if set(pattern) - {"esbendpoint"}:
            return None
        names = pattern.get("esbendpoint", [])
        if not all(isinstance(n, str) for n in names):
            return None
        endpoints.update(names)

    def firing(endpoint: str | None) -> list[CompiledRoute]:
        hits = [r for r, p in zip(routes, patterns, strict=True)
                if "esbendpoint" not in p or endpoint in p["esbendpoint"]]
        return Router._order(hits)

    table: dict[str | None, list[CompiledRoute]] = {e: firing(e) for e in endpoints}
    table[None] = firing(None)  # any other endpoint: only the routes without ``from``
    return table


def compile_routes(rs: RouteSet, *, sources: Collection[str], destinations: Collection[str],
                   named: Mapping[str, Any] | None = None, base_dir: Path,
                   version: int = 0, registry: Any = None,
                   xml_limits: XmlLimits = DEFAULT_LIMITS) -> Router:
    """Check references, patterns and transformer chains of every route that parsed, and build
    the router. ConfigError lists every problem — the route set's own (schema, duplicate
    names) and these — with file:line, ordered by file and line."""
    problems: list[str] = list(rs.problems)
    compiled: list[CompiledRoute] = []
    patterns: list[dict[str, Any]] = []
    chains = _ChainBuilder(base_dir, named, registry, xml_limits)
    for order, placed in enumerate(rs.routes):
        compiled.append(_compile_route(placed, order, rs.namespaces, sources, destinations,
                                       chains, problems))
        patterns.append(_pattern(placed, problems))
    index = None
    if not problems:
        try:
            index = PatternIndex(patterns, rs.namespaces)
        except ValueError as exc:
            problems.extend(getattr(exc, "problems", [str(exc)]))
    if problems or index is None:
        raise ConfigError(sort_problems(problems))
    return Router(compiled, index, version=version, digest=rs.digest, patterns=patterns,
                  xml_limits=xml_limits)


def _compile_route(placed: PlacedRoute, order: int, namespaces: Mapping[str, str],
                   sources: Collection[str], destinations: Collection[str],
                   chains: _ChainBuilder, problems: list[str]) -> CompiledRoute:
    """One route's references, pattern and chains; its problems are added to ``problems``."""
    route = placed.route
    for i, src in enumerate(route.from_ or []):
        if src not in sources:
            problems.append(f"{placed.where('from', i)}: {route.name}: from: "
                            f"{_unknown('source', src, sources)}")
    for problem in pattern_problems(route.match, namespaces=namespaces):
        problems.append(f"{placed.where('match', *problem.loc)}: {route.name}: "
                        f"{problem.render('match')}")
    chain = chains.build(route.transform, placed, ("transform",), f"{route.name}: transform",
                         problems)
    legs = []
    for i, target in enumerate(route.to):
        if target.destination not in destinations:
            unknown = _unknown("destination", target.destination, destinations)
            problems.append(f"{placed.where('to', i, 'destination')}: {route.name}: "
                            f"to[{i}]: {unknown}")
        leg_chain = chains.build(target.transform, placed, ("to", i, "transform"),
                                 f"{route.name}: to[{i}].transform", problems)
        legs.append(Leg(target.destination, leg_chain))
    splitter = None
    if route.split is not None:
        try:
            splitter = Splitter.compile(route.split, dict(namespaces))
        except ValueError as exc:
            problems.append(f"{placed.where('split')}: {route.name}: {exc}")
    enricher = None
    if route.enrich is not None:
        enricher = _compile_enrich(placed, destinations, chains, problems)
    reply = None
    if route.reply is not None:
        reply = ReplyLeg(route.reply.timeout, chains.build(
            route.reply.transform, placed, ("reply", "transform"),
            f"{route.name}: reply.transform", problems), route.reply.cache)
    return CompiledRoute(route.name, order, route.priority, route.exclusive, chain,
                         tuple(legs), reply=reply, split=splitter, enrich=enricher)


def _compile_enrich(placed: PlacedRoute, destinations: Collection[str], chains: _ChainBuilder,
                    problems: list[str]) -> Enricher:
    route = placed.route
    spec = route.enrich
    assert spec is not None
    if spec.destination not in destinations:
        problems.append(f"{placed.where('enrich', 'destination')}: {route.name}: enrich: "
                        f"{_unknown('destination', spec.destination, destinations)}")
    built = {part: chains.build(getattr(spec, part), placed, ("enrich", part),
                                f"{route.name}: enrich.{part}", problems)
             for part in ("request", "reply", "merge")}
    return Enricher(spec.destination, built["request"], built["reply"], built["merge"],
                    spec.timeout, spec.on_failure, spec.cache, chains.xml_limits)


def _pattern(placed: PlacedRoute, problems: list[str]) -> dict[str, Any]:
    """The route's pattern for the index, with ``from`` as a condition on the endpoint."""
    route = placed.route
    pattern = dict(route.match)
    if route.from_:
        if "esbendpoint" in pattern:
            problems.append(f"{placed.where('match', 'esbendpoint')}: {route.name}: use "
                            "'from' instead of matching esbendpoint directly")
        pattern["esbendpoint"] = list(route.from_)
    return pattern


@dataclass(frozen=True)
class _ChainBuilder:
    base_dir: Path
    named: Mapping[str, Any] | None
    registry: Any
    xml_limits: XmlLimits = DEFAULT_LIMITS

    def build(self, steps: list[Any], placed: PlacedRoute, loc: tuple[str | int, ...],
              label: str, problems: list[str]) -> Chain:
        """Build a chain; on failure add each problem at the line of the step it concerns
        (``label[i]...`` from :func:`build_chain`) and return the empty chain."""
        try:
            return build_chain(steps, base_dir=self.base_dir, named=self.named,
                               registry=self.registry, where=label,
                               xml_limits=self.xml_limits)
        except ConfigError as exc:
            step = re.compile(re.escape(label) + r"\[(\d+)\]")
            for p in exc.problems:
                m = step.match(p)
                at = (*loc, int(m[1])) if m else loc
                problems.append(f"{placed.where(*at)}: {p}")
            return build_chain([], base_dir=self.base_dir)


def _unknown(kind: str, name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} (configured: {', '.join(sorted(known)) or 'none'})"
