"""GraphQL inbound fields resolved through request/reply routes, on a daemon on RabbitMQ: one
query whose three fields are answered by three backends — a legacy SOAP service (spyne), a REST
API and a GraphQL API (graphql-core) — concurrently, one of them failing (§12)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from esbtest.asgi import serve_in_thread
from esbtest.customer_service import CustomerPeer
from graphql import build_schema, graphql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SDL = """
type Customer { id: Int!, name: String!, tier: String, creditLimit: Float }
type Order { id: ID!, total: Float! }
type Query {
  customer(id: Int!): Customer
  orders(customerId: Int!): [Order!]
  loyalty(customerId: Int!): Int
  badlyTyped(id: Int!): Int
  nobody: String
}
"""

LOYALTY_SDL = "type Query { points(customer: Int!): Int }"
LOYALTY_QUERY = "query Points($customer: Int!) { points(customer: $customer) }"


class Peers:
    """The REST orders API waits until the GraphQL loyalty API has been called (at most 20 s):
    the two fields of one query can only both succeed when they are resolved concurrently."""

    def __init__(self) -> None:
        self.loyalty_called = threading.Event()
        self.orders_waited: list[bool] = []

    def orders_app(self) -> Starlette:
        async def orders(request: Request) -> Response:
            seen = await asyncio.to_thread(self.loyalty_called.wait, 20)
            self.orders_waited.append(seen)
            cid = int(request.path_params["id"])
            return JSONResponse([{"id": f"O-{cid}-1", "total": 12.5},
                                 {"id": f"O-{cid}-2", "total": 99.0}])

        async def typed_wrong(request: Request) -> Response:
            return JSONResponse("not a number")

        return Starlette(routes=[Route("/customers/{id}/orders", orders),
                                 Route("/wrong/{id}", typed_wrong)])

    def loyalty_app(self) -> Starlette:
        schema = build_schema(LOYALTY_SDL)

        def points(_root: Any, _info: Any, customer: int) -> int:
            self.loyalty_called.set()
            if customer == 13:
                raise ValueError("loyalty account 13 is frozen")
            return customer * 10

        schema.query_type.fields["points"].resolve = points  # type: ignore[union-attr]

        async def endpoint(request: Request) -> Response:
            body = await request.json()
            result = await graphql(schema, body["query"],
                                   variable_values=body.get("variables"))
            out: dict[str, Any] = {"data": result.data}
            if result.errors:
                out["errors"] = [e.formatted for e in result.errors]
            return JSONResponse(out)

        return Starlette(routes=[Route("/graphql", endpoint, methods=["POST"])])


@pytest.fixture
def peers() -> Iterator[tuple[Peers, CustomerPeer, str, str]]:
    p = Peers()
    with CustomerPeer() as crm, serve_in_thread(p.orders_app()) as orders, \
            serve_in_thread(p.loyalty_app()) as loyalty:
        yield p, crm, orders, loyalty


def config(bus: dict[str, Any], crm: CustomerPeer, orders: str, loyalty: str
           ) -> dict[str, Any]:
    # A backend's error (loyalty 13) is retried, max_attempts in all, before its field is
    # answered with it: a back-off of at most 0.25 s keeps that to a second or two instead of
    # a doubling one's 10 to 20 s.
    delivery = {"timeout": "20s", "backoff": {"initial": "0.2s", "max": "0.25s"},
                "breaker": False}
    return {
        "bus": bus,
        "sources": {"gql": {"adapter": "graphql", "path": "/graphql", "sdl": "api.graphql"}},
        "destinations": {
            "crm": {"adapter": "soap", "wsdl": crm.url + "?wsdl", "allow_network_wsdl": True,
                    "operation": "GetCustomer", "delivery": delivery},
            "orders": {"adapter": "rest", "method": "GET",
                       "url": orders + "/customers/{data.customerId}/orders",
                       "delivery": delivery},
            "wrong": {"adapter": "rest", "method": "GET", "url": orders + "/wrong/{data.id}",
                      "delivery": delivery},
            "loyalty": {"adapter": "graphql", "url": loyalty + "/graphql",
                        "document": "points.graphql",
                        "variables": {"customer": "data.customerId"}, "delivery": delivery},
        },
    }


ROUTES = {"gql.yaml": {"routes": [
    {"name": "customer", "from": ["gql"], "match": {"type": ["customer"]}, "to": "crm",
     "reply": {"timeout": "25s", "transform": [
         {"xml-to-json": {"strip_namespaces": True,
                          "types": {"id": "integer", "creditLimit": "number"}}},
         {"jmespath": "GetCustomerResponse.GetCustomerResult"}]}},
    {"name": "orders", "from": ["gql"], "match": {"type": ["orders"]}, "to": "orders",
     "reply": {"timeout": "25s"}},
    {"name": "loyalty", "from": ["gql"], "match": {"type": ["loyalty"]}, "to": "loyalty",
     "reply": {"timeout": "25s", "transform": [{"jmespath": "points"}]}},
    {"name": "badly-typed", "from": ["gql"], "match": {"type": ["badlyTyped"]}, "to": "wrong",
     "reply": {"timeout": "25s"}},
]}}

QUERY = """query Overview($id: Int!) {
  customer(id: $id) { id name tier creditLimit }
  orders(customerId: $id) { id total }
  loyalty(customerId: $id)
}"""


def test_three_fields_three_backends_concurrently_one_failing(daemon_factory: Any,
                                                             rabbit: Any, peers: Any) -> None:
    p, crm, orders, loyalty = peers
    d = daemon_factory(config(rabbit.bus("crm", "orders", "wrong", "loyalty"), crm, orders,
                              loyalty), ROUTES,
                       files={"api.graphql": SDL, "points.graphql": LOYALTY_QUERY}).start()
    r = httpx.post(f"{d.url}/graphql", json={"query": QUERY, "variables": {"id": 7}},
                   timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": {
        "customer": {"id": 7, "name": "Customer 7", "tier": "gold", "creditLimit": 7000.0},
        "orders": [{"id": "O-7-1", "total": 12.5}, {"id": "O-7-2", "total": 99.0}],
        "loyalty": 70}}
    assert p.orders_waited == [True]  # orders and loyalty were in flight at the same time

    # one backend failing: its field is null with an error beside the others' data
    p.loyalty_called.clear()
    r = httpx.post(f"{d.url}/graphql", json={"query": QUERY, "variables": {"id": 13}},
                   timeout=60)
    body = r.json()
    assert r.status_code == 200
    assert body["data"]["customer"]["name"] == "Customer 13"
    assert body["data"]["orders"] == [{"id": "O-13-1", "total": 12.5},
                                      {"id": "O-13-2", "total": 99.0}]
    assert body["data"]["loyalty"] is None
    (error,) = body["errors"]
    assert error["path"] == ["loyalty"] and "frozen" in error["message"]
    assert error["extensions"]["code"] == "BACKEND"

    # the SOAP service's fault for an unknown customer: that field's error
    r = httpx.post(f"{d.url}/graphql", json={"query": "query($id: Int!) { customer(id: $id) "
                                             "{ name } }", "variables": {"id": 150}},
                   timeout=60)
    assert r.json()["data"] == {"customer": None}
    assert "no customer 150" in r.json()["errors"][0]["message"]

    # an answer that does not fit the SDL is an error, not a wrong value
    r = httpx.post(f"{d.url}/graphql", json={"query": "{ badlyTyped(id: 1) }"}, timeout=60)
    assert r.json()["data"] == {"badlyTyped": None}
    assert "Int cannot represent" in r.json()["errors"][0]["message"]
    # a field no request/reply route answers: an error, and nothing is published
    r = httpx.post(f"{d.url}/graphql", json={"query": "{ nobody }"}, timeout=60)
    assert r.json()["errors"][0]["extensions"]["code"] == "UNANSWERABLE"
