"""What a source's context gives its adapter beyond accept(): refusals counted in
``esb_rejected`` by reason — every HTTP answer of 400 or more, and what a side reports itself."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.spec import HttpRoute
from esb.bus.broker.embedded import EmbeddedBus
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.runtime.ingress import Ingress, RouterHolder, SourceContext
from esb.bus.runtime.metrics import Metrics


async def test_a_sources_refusals_are_counted_by_reason(tmp_path: Path) -> None:
    router = compile_routes(parse_route_files({"r.yaml": "routes: []\n"}, base=tmp_path),
                            sources={"shop"}, destinations=set(), base_dir=tmp_path)
    metrics = Metrics()
    ctx = SourceContext("shop", tmp_path, "i1", 1024,
                        Ingress(EmbeddedBus(), RouterHolder(router), metrics, "i1"))
    assert ctx.metrics is metrics
    answers = iter([Response(status_code=202), Response(status_code=415),
                    Response(status_code=415), Response(status_code=503)])

    async def handler(request: Request) -> Response:
        return next(answers)

    route = ctx.counting_refusals(HttpRoute("/in/shop", ("POST",), handler))
    scope = {"type": "http", "method": "POST", "path": "/in/shop", "headers": []}
    statuses = [(await route.handler(Request(scope))).status_code for _ in range(4)]
    assert statuses == [202, 415, 415, 503]  # the answers themselves are untouched
    ctx.rejected("not-an-envelope")
    value = metrics.registry.get_sample_value
    assert value("esb_rejected_total", {"source": "shop", "reason": "415"}) == 2
    assert value("esb_rejected_total", {"source": "shop", "reason": "503"}) == 1
    assert value("esb_rejected_total", {"source": "shop", "reason": "not-an-envelope"}) == 1
    assert value("esb_rejected_total", {"source": "shop", "reason": "202"}) is None
