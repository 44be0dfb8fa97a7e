"""Route sets whose only condition is ``from`` are matched by a lookup table; the table must
fire exactly what the pattern index fires (priorities, exclusive routes, routes without
``from``), and any other condition must fall back to the index."""

from __future__ import annotations

from pathlib import Path

from esb.bus.envelope import Envelope
from esb.bus.routing.router import Router, compile_routes
from esb.bus.routing.routeset import parse_route_files

SOURCES = {"shop", "crm", "billing"}
DESTS = {"erp", "audit", "wms", "mail"}

ROUTES = """\
routes:
  - name: shop-to-erp
    from: [shop]
    to: [{destination: erp}]
  - name: everything-audited
    priority: 5
    to: [{destination: audit}]
  - name: shop-or-crm-to-wms
    from: [shop, crm]
    priority: 9
    to: [{destination: wms}]
  - name: crm-first
    from: [crm]
    exclusive: true
    priority: 20
    to: [{destination: mail}]
  - name: crm-second
    from: [crm]
    exclusive: true
    priority: 10
    to: [{destination: erp}]
"""


def router(text: str, tmp_path: Path) -> Router:
    rs = parse_route_files({"r.yaml": text}, base=tmp_path)
    return compile_routes(rs, sources=SOURCES, destinations=DESTS, base_dir=tmp_path)


def fired(r: Router, endpoint: str | None, **kw: object) -> list[str]:
    env = Envelope(source="x", type=str(kw.pop("type", "t")), esbendpoint=endpoint, data={})
    return [route.name for route in r.match(env)]


def by_index(r: Router, endpoint: str | None) -> list[str]:
    env = Envelope(source="x", type="t", esbendpoint=endpoint, data={})
    ids = r.index.matches(env.match_view(), None)
    return [route.name for route in Router._order([r.routes[i] for i in ids])]


def test_from_only_route_sets_fire_what_the_index_fires(tmp_path: Path) -> None:
    r = router(ROUTES, tmp_path)
    assert r._by_endpoint is not None  # the table is in use
    assert fired(r, "shop") == ["shop-or-crm-to-wms", "everything-audited", "shop-to-erp"]
    assert fired(r, "crm") == ["crm-first"]  # first exclusive wins, others pruned
    assert fired(r, "billing") == ["everything-audited"]
    assert fired(r, None) == ["everything-audited"]
    for endpoint in ("shop", "crm", "billing", "nowhere", None):
        assert fired(r, endpoint) == by_index(r, endpoint), endpoint


def test_a_condition_beyond_from_uses_the_index(tmp_path: Path) -> None:
    text = ROUTES + """\
  - name: typed
    from: [billing]
    match: {type: [invoice]}
    to: [{destination: erp}]
"""
    r = router(text, tmp_path)
    assert r._by_endpoint is None
    assert fired(r, "billing", type="invoice") == ["everything-audited", "typed"]
    assert fired(r, "billing", type="other") == ["everything-audited"]


def test_no_routes_for_an_endpoint_fire_nothing(tmp_path: Path) -> None:
    r = router("routes:\n  - name: only\n    from: [shop]\n    to: [{destination: erp}]\n",
               tmp_path)
    assert fired(r, "crm") == [] and fired(r, "shop") == ["only"]


def test_fired_for_answers_only_when_the_endpoint_decides(tmp_path: Path) -> None:
    r = router(ROUTES, tmp_path)
    shop = r.fired_for("shop")
    assert shop is not None and [x.name for x in shop] == fired(r, "shop")
    assert r.fired_for("nowhere") is not None
    assert [x.name for x in r.fired_for("nowhere") or []] == ["everything-audited"]
    typed = router(ROUTES + "  - name: typed\n    match: {type: [x]}\n"
                   "    to: [{destination: erp}]\n", tmp_path)
    assert typed.fired_for("shop") is None  # the envelope must be matched
    unconditional = router("routes:\n  - name: all\n    to: [{destination: erp}]\n", tmp_path)
    assert [x.name for x in unconditional.fired_for("anything") or []] == ["all"]


def test_an_exclusive_route_ends_the_firing_order(tmp_path: Path) -> None:
    """First-match-wins: in firing order (priority, then file order) the routes ahead of the
    first exclusive route fire with it, and nothing after it does — not a lower-priority
    route, not an equal-priority one later in the file, not another exclusive route."""
    text = """\
routes:
  - name: same-priority-after
    from: [shop]
    priority: 5
    to: [{destination: wms}]
  - name: ahead
    from: [shop]
    priority: 9
    to: [{destination: audit}]
  - name: first-exclusive
    from: [shop]
    priority: 7
    exclusive: true
    to: [{destination: erp}]
  - name: lower-exclusive
    from: [shop]
    priority: 1
    exclusive: true
    to: [{destination: mail}]
  - name: same-priority-later
    from: [shop]
    priority: 7
    to: [{destination: wms}]
"""
    r = router(text.replace("priority: 5", "priority: 7"), tmp_path)
    # ``same-priority-after`` is earlier in the file at priority 7: it is ahead, so it fires.
    assert fired(r, "shop") == ["ahead", "same-priority-after", "first-exclusive"]
    assert fired(r, "shop") == by_index(r, "shop")
    r = router(text, tmp_path)
    assert fired(r, "shop") == ["ahead", "first-exclusive"]
    assert fired(r, "shop") == by_index(r, "shop")
    indexed = router(text.replace("from: [shop]", "match: {type: [t]}"), tmp_path)
    assert indexed._by_endpoint is None  # the pattern index and _order, not the table
    assert fired(indexed, "shop") == ["ahead", "first-exclusive"]
