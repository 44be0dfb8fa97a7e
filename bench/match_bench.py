"""Pattern-matching benchmark: µs per event for 10, 1,000 and 10,000 routes.

Three route shapes, each printed with the 10,000-route / 10-route ratio:

- ``mixed``: routes differ by exact `type` and by data values, e.g.
  ``{"type": ["order.created.N"], "data": {"country": [...], "total": [{"numeric": [">=", N]}]}}``;
  a few use prefix / anything-but / $or so the index is not only hash lookups.
- ``numeric-ranges``: routes told apart only by a numeric range,
  ``{"data": {"total": [{"numeric": [">=", N, "<", N + 1]}]}}``.
- ``leading-star``: routes told apart only by a glob starting with `*`,
  ``{"data": {"host": [{"wildcard": "*-N.example"}]}}``.
- ``xpath``: XML payloads; routes share a `type` and are told apart only by an `$xpath`
  value (even N, ``{"/o:order/o:sku": ["sku-N"]}``) or an `$xpath` numeric range (odd N,
  ``{"/o:order/o:total": [{"numeric": [">=", N, "<", N + 1]}]}``). Each match parses the
  payload (as the router does), so the figures include one parse.

``checked/event`` is how many route alternatives the index handed over for a full check,
``xpath/event`` how many XPath expressions it evaluated.

    python bench/match_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from esb.bus.routing.pattern_index import PatternIndex, reference_match
from esb.bus.xmlsafe import parse_xml

COUNTRIES = ["DE", "FR", "IT", "ES", "NL", "PL", "SE", "AT"]
NS = {"o": "urn:shop"}


def make_routes(n: int, rng: random.Random) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for i in range(n):
        data: dict[str, Any] = {
            "country": rng.sample(COUNTRIES, 2),
            "total": [{"numeric": [">=", rng.randrange(0, 2000)]}],
        }
        kind = i % 10
        if kind == 7:
            data["channel"] = [{"anything-but": ["test", "staging"]}]
        elif kind == 8:
            data["email"] = [{"suffix": ".com"}]
        route: dict[str, Any] = {"type": [f"order.created.{i}"], "data": data}
        if kind == 9:
            route = {
                "source": [{"prefix": f"shop-{i}/"}],
                "$or": [{"data": {"country": ["DE"]}}, {"data": {"vip": [True]}}],
            }
        routes.append(route)
    return routes


def make_events(n_routes: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for k in range(count):
        i = rng.randrange(n_routes)
        events.append(
            {
                "specversion": "1.0",
                "id": f"ev-{k}",
                "source": f"shop-{i}/eu",
                "type": f"order.created.{i}",
                "time": "2026-01-15T10:00:00Z",
                "datacontenttype": "application/json",
                "esbendpoint": "shop",
                "data": {
                    "country": rng.choice(COUNTRIES),
                    "total": rng.randrange(0, 3000),
                    "vip": rng.random() < 0.3,
                    "channel": "web",
                    "email": "a@b.com",
                    "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
                },
            }
        )
    return events


def make_band_routes(n: int, rng: random.Random) -> list[dict[str, Any]]:
    return [{"data": {"total": [{"numeric": [">=", i, "<", i + 1]}]}} for i in range(n)]


def make_band_events(n_routes: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"type": "order.created", "id": f"ev-{k}", "data": {"total": rng.uniform(-1, n_routes)}}
        for k in range(count)
    ]


def make_glob_routes(n: int, rng: random.Random) -> list[dict[str, Any]]:
    return [{"data": {"host": [{"wildcard": f"*-{i}.example"}]}} for i in range(n)]


def make_glob_events(n_routes: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "type": "request.received",
            "id": f"ev-{k}",
            "data": {"host": f"{rng.choice(['api', 'www', 'eu.app'])}-"
                     f"{rng.randrange(n_routes + n_routes // 10)}.example"},
        }
        for k in range(count)
    ]


def make_xpath_routes(n: int, rng: random.Random) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for i in range(n):
        if i % 2:
            cond: dict[str, Any] = {"/o:order/o:total": [{"numeric": [">=", i, "<", i + 1]}]}
        else:
            cond = {"/o:order/o:sku": [f"sku-{i}"]}
        routes.append({"type": ["order.created"], "data": {"$xpath": cond}})
    return routes


def make_xpath_events(n_routes: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "type": "order.created",
            "id": f"ev-{k}",
            "datacontenttype": "application/xml",
            "data": f"<o:order xmlns:o='urn:shop'><o:sku>sku-{rng.randrange(n_routes)}</o:sku>"
            f"<o:total>{rng.uniform(-1, n_routes):.2f}</o:total><o:note>gift</o:note></o:order>",
        }
        for k in range(count)
    ]


Maker = Callable[[int, random.Random], list[dict[str, Any]]]
EventMaker = Callable[[int, int, random.Random], list[dict[str, Any]]]


@dataclass(frozen=True)
class Shape:
    routes: Maker
    events: EventMaker
    xml: bool = False  # events carry an XML payload in `data`


SHAPES: dict[str, Shape] = {
    "mixed": Shape(make_routes, make_events),
    "numeric-ranges": Shape(make_band_routes, make_band_events),
    "leading-star": Shape(make_glob_routes, make_glob_events),
    "xpath": Shape(make_xpath_routes, make_xpath_events, xml=True),
}


def matcher(index: PatternIndex, xml: bool) -> Callable[[dict[str, Any]], list[int]]:
    """``index.matches``; for XML events with the router's lazy payload parser."""
    if not xml:
        return index.matches

    def match(ev: dict[str, Any]) -> list[int]:
        return index.matches(ev, lambda: parse_xml(ev["data"]))

    return match


def reference(routes: list[dict[str, Any]], xml: bool) -> Callable[[dict[str, Any]], list[int]]:
    """Every route through :func:`reference_match`, one after the other."""

    def loop(ev: dict[str, Any]) -> list[int]:
        root = parse_xml(ev["data"]) if xml else None
        return [i for i, r in enumerate(routes) if reference_match(r, ev, root, NS)]

    return loop


def per_call_us(
    fn: Callable[[dict[str, Any]], Any], events: list[dict[str, Any]], min_seconds: float
) -> float:
    calls = 0
    start = time.perf_counter()
    while True:
        for ev in events:
            fn(ev)
        calls += len(events)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls * 1e6


def run_shape(name: str, min_seconds: float, ref_seconds: float) -> float:
    """Print one shape's table; returns its 10,000-route / 10-route index µs ratio."""
    shape = SHAPES[name]
    rng = random.Random(7)
    print(f"\n{name}")
    print(
        f"{'routes':>8} {'index µs/match':>15} {'reference µs/match':>19} "
        f"{'matches/event':>14} {'checked/event':>14} {'xpath/event':>12}"
    )
    index_us: dict[int, float] = {}
    for n in (10, 1_000, 10_000):
        routes = shape.routes(n, rng)
        events = shape.events(n, 200, rng)
        index = PatternIndex(routes, NS)
        match, loop = matcher(index, shape.xml), reference(routes, shape.xml)
        # Sanity: the index and the reference agree on these events.
        for ev in events[: 20 if n < 10_000 else 5]:
            assert match(ev) == loop(ev)
        works = [
            index.work(ev, (lambda ev=ev: parse_xml(ev["data"])) if shape.xml else None)
            for ev in events
        ]
        hits = sum(len(w.matched) for w in works) / len(works)
        checked = sum(w.checked for w in works) / len(works)
        evals = sum(w.xpath_evals for w in works) / len(works)
        index_us[n] = per_call_us(match, events, min_seconds)
        ref_events = events[:3] if n >= 1_000 else events
        ref_us = per_call_us(loop, ref_events, ref_seconds)
        print(
            f"{n:>8,} {index_us[n]:>15.2f} {ref_us:>19.1f} {hits:>14.2f} {checked:>14.2f} "
            f"{evals:>12.2f}"
        )
    ratio = index_us[10_000] / index_us[10]
    print(f"ratio 10,000-route / 10-route index µs: {ratio:.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append",
                        help="only these shapes (default: all)")
    args = parser.parse_args()
    min_seconds = 0.3 if args.quick else 1.5
    ref_seconds = 0.3 if args.quick else 1.0
    ratios = {name: run_shape(name, min_seconds, ref_seconds) for name in args.shape or SHAPES}
    print("\n" + "  ".join(f"{name}: {ratio:.2f}" for name, ratio in ratios.items()))


if __name__ == "__main__":
    main()
