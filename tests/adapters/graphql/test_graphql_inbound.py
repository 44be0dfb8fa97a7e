"""GraphQL inbound over a real socket, with httpx posting GraphQL-over-HTTP requests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from esbtest.cycles import CyclesLeft
from graphql import build_schema

from esb.adapters.graphql.inbound import GraphqlInbound, RequestRefused, prepare
from esb.adapters.graphql.limits import QueryLimits
from esb.adapters.graphql.settings import GraphqlInboundSettings
from esb.adapters.spec import HttpRoute
from esb.bus.errors import ConfigError

HERE = Path(__file__).parent
Serve = Callable[[list[HttpRoute]], str]
CREATE = """mutation Create($id: ID!, $amount: Float!, $lines: [LineInput!]) {
  createOrder(orderId: $id, amount: $amount, priority: HIGH, lines: $lines)
}"""


@pytest.fixture
def url(serve_routes: Serve, inbound_ctx: Any) -> str:
    shutil.copy(HERE / "orders.graphql", inbound_ctx.config_dir / "orders.graphql")
    cfg = GraphqlInboundSettings(path="/graphql", sdl="orders.graphql")
    return serve_routes(GraphqlInbound(cfg, inbound_ctx).routes) + "/graphql"


def post(url: str, query: str, variables: dict[str, Any] | None = None,
         accept: str = "application/json") -> httpx.Response:
    return httpx.post(url, json={"query": query, "variables": variables},
                      headers={"accept": accept})


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


def test_mutation_becomes_envelope(url: str, inbound_ctx: Any) -> None:
    response = post(url, CREATE, {"id": "O-1", "amount": 9.5, "lines": [{"sku": "A"}]})
    assert response.status_code == 200, response.text
    env = inbound_ctx.accepted[0]
    assert response.json() == {"data": {"createOrder": env.id}}
    assert (env.type, env.source, env.datacontenttype) == (
        "createOrder", "test-source", "application/json")
    assert env.data == {"orderId": "O-1", "amount": 9.5, "priority": "HIGH",
                        "lines": [{"sku": "A", "qty": 1}]}


def test_object_result_and_several_fields(url: str, inbound_ctx: Any) -> None:
    query = """mutation { a: cancelOrder(orderId: "1") { id status }
                          b: cancelOrder(orderId: "2", reason: "dup") { id } }"""
    data = post(url, query).json()["data"]
    assert [e.data for e in inbound_ctx.accepted] == [{"orderId": "1"},
                                                      {"orderId": "2", "reason": "dup"}]
    assert data == {"a": {"id": inbound_ctx.accepted[0].id, "status": "ACCEPTED"},
                    "b": {"id": inbound_ctx.accepted[1].id}}


def test_invalid_argument_and_unknown_field(url: str, inbound_ctx: Any) -> None:
    bad = 'mutation { createOrder(orderId: "1", amount: "lots") }'
    response = post(url, bad)
    assert response.status_code == 200 and "data" not in response.json()
    assert codes(response) == ["GRAPHQL_VALIDATION_FAILED"]
    modern = post(url, bad, accept="application/graphql-response+json")
    assert modern.status_code == 400
    assert modern.headers["content-type"].startswith("application/graphql-response+json")
    assert codes(post(url, 'mutation { shipOrder(orderId: "1") }')) == [
        "GRAPHQL_VALIDATION_FAILED"]
    assert inbound_ctx.accepted == []


def test_bad_variables_and_parse_error(url: str, inbound_ctx: Any) -> None:
    response = post(url, CREATE, {"id": "O-1", "amount": "nine"})
    assert response.status_code == 200 and codes(response) == ["BAD_USER_INPUT"]
    assert codes(post(url, "mutation {")) == ["GRAPHQL_PARSE_FAILED"]
    assert inbound_ctx.accepted == []


def test_malformed_requests(url: str) -> None:
    response = httpx.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400 and codes(response) == ["BAD_REQUEST"]
    assert httpx.post(url, json={"variables": {}}).status_code == 400
    assert httpx.post(url, content=b"query{health}",
                      headers={"content-type": "text/plain"}).status_code == 415
    assert httpx.get(url).status_code == 405


def test_bus_down_is_503(url: str, inbound_ctx: Any) -> None:
    inbound_ctx.down = True
    response = post(url, CREATE, {"id": "O-1", "amount": 1})
    assert response.status_code == 503
    assert response.json()["data"] is None
    assert codes(response) == ["BUS_UNAVAILABLE"]


def test_query_answers_null(url: str) -> None:
    assert post(url, "{ health }").json() == {"data": {"health": None}}


@pytest.mark.parametrize("sdl", ["type Query { a: Int } type Mutation { m(x: Int): Int }",
                                 "type Query { a: Int }",
                                 "type Mutation { m: Thing } type Thing { name: String }",
                                 "type Mutation {"])
def test_bad_sdl_is_config_error(tmp_path: Path, inbound_ctx: Any, sdl: str) -> None:
    (tmp_path / "s.graphql").write_text(sdl)
    with pytest.raises(ConfigError):
        GraphqlInbound(GraphqlInboundSettings(path="/g", sdl=str(tmp_path / "s.graphql")),
                       inbound_ctx)


def test_mutation_only_sdl_gets_a_query_root(tmp_path: Path, serve_routes: Serve,
                                             inbound_ctx: Any) -> None:
    (tmp_path / "s.graphql").write_text("type Mutation { ping(n: Int): String }")
    inbound = GraphqlInbound(GraphqlInboundSettings(path="/g", sdl="s.graphql"), inbound_ctx)
    url = serve_routes(inbound.routes) + "/g"
    assert post(url, "mutation { ping(n: 1) }").json()["data"]["ping"] == \
        inbound_ctx.accepted[0].id


@pytest.mark.parametrize("query", ["{ a", "{ " + "x" * 100_000])
def test_a_query_that_does_not_parse_leaves_no_garbage_for_the_cyclic_collector(
        query: str) -> None:
    """graphql-core links each token to its neighbours; those links are cut after parsing, so
    a refused query (its text included) is freed at once, not when the collector next runs
    (which the daemon paces: esb.bus.runtime.collector). (A query that parses is validated,
    and graphql-core's validation leaves ~740 objects in cycles a query, which start a
    collection by their count within a few dozen queries.)"""
    schema = build_schema("type Query { a: Int }")

    def one() -> None:
        with contextlib.suppress(RequestRefused):
            prepare(schema, {"query": query}, QueryLimits())

    one()
    with CyclesLeft() as cycles:
        for _ in range(20):
            one()
    assert cycles.left == 0, f"{cycles.left} objects in reference cycles after 20 queries"
