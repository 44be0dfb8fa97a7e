"""Named transformer definitions (``transformers:`` in esb.yaml) are shared by routes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from esb.bus.config.loader import load_config
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError
from esb.bus.routing.from_config import load_router
from esb.bus.routing.router import Router
from esb.bus.routing.trial import route_envelope

STYLESHEET = """\
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/order"><summary id="{id}" total="{total}"/></xsl:template>
</xsl:stylesheet>
"""

CONFIG = {
    "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
    "destinations": {"erp": {"adapter": "rest", "url": "http://erp.example/in"},
                     "crm": {"adapter": "rest", "url": "http://crm.example/in"}},
    "transformers": {
        # a list of steps; its stylesheet path is relative to the project folder
        "order-summary": [{"xslt": "xslt/summary.xsl"}],
        "customer-only": {"jmespath": "customer"},
    },
    "routes": "routes",
}

ROUTES = {"routes": [
    # the definition as the route's own chain ...
    {"name": "orders-to-erp", "match": {"type": ["order"]}, "transform": ["order-summary"],
     "to": ["erp"]},
    # ... and as one destination's chain of another route
    {"name": "orders-to-crm", "match": {"type": ["order"]},
     "to": [{"destination": "crm", "transform": ["order-summary"]}]},
]}

ORDER = "<order><id>PO-1</id><total>9.50</total></order>"


def write_project(root: Path, config: dict[str, object], routes: dict[str, object]) -> Path:
    (root / "routes").mkdir()
    (root / "xslt").mkdir()
    (root / "xslt/summary.xsl").write_text(STYLESHEET)
    (root / "routes/orders.yaml").write_text(yaml.safe_dump(routes, sort_keys=False))
    path = root / "esb.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def router_for(root: Path, config: dict[str, object] = CONFIG,
               routes: dict[str, object] = ROUTES) -> Router:
    loaded = load_config(write_project(root, config, routes), env={}, base_dir=root)
    return load_router(loaded, root / "routes")


def test_one_definition_serves_two_routes(tmp_path: Path) -> None:
    router = router_for(tmp_path)
    by_name = {r.name: r for r in router.routes}
    assert by_name["orders-to-erp"].chain.steps == ["order-summary/xslt"]
    crm_leg = by_name["orders-to-crm"].legs[0]
    assert (crm_leg.destination, crm_leg.chain.steps) == ("crm", ["order-summary/xslt"])

    env = Envelope(source="shop", type="order", datacontenttype="application/xml", data=ORDER)
    trial = route_envelope(router, env, "shop")
    outputs = {d.destination: d.envelope for d in trial.outcomes}
    assert set(outputs) == {"erp", "crm"}
    for out in outputs.values():
        assert out is not None
        assert '<summary id="PO-1" total="9.50"/>' in out.data


def test_a_route_naming_an_undefined_transformer_is_refused(tmp_path: Path) -> None:
    config = {**CONFIG, "transformers": {"customer-only": {"jmespath": "customer"}}}
    with pytest.raises(ConfigError) as info:
        router_for(tmp_path, config)
    problems = "\n".join(info.value.problems)
    # both routes are reported, each where it names the missing definition
    assert problems.count("unknown transformer 'order-summary'") == 2
    assert "orders.yaml" in problems
