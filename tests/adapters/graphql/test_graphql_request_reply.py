"""GraphQL inbound with a request/reply capable context (a real socket, a fake runtime): query
fields resolve through ``request``, failures become field errors, answers are checked against
the SDL, and queries past the depth/alias/field limits are refused before anything is asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from esb.adapters.graphql.inbound import GraphqlInbound
from esb.adapters.graphql.settings import GraphqlInboundSettings
from esb.adapters.spec import Accepted, HttpRoute
from esb.bus.envelope import Envelope
from esb.bus.payload import DEFAULT_JSON_DEPTH
from esb.bus.reply import failure_envelope

SDL = """
type Customer { id: Int!, name: String!, friend: Customer }
type Query { customer(id: Int!): Customer, count: Int }
"""


@dataclass
class AnsweringContext:
    """A runtime whose request/reply routes answer ``customer`` (404 for id 0) and ``count``
    (with a value that is not an Int)."""

    config_dir: Path
    name: str = "gql"
    instance: str = "test-1"
    json_depth: int = DEFAULT_JSON_DEPTH
    asked: list[Envelope] = field(default_factory=list)
    replies = True

    async def accept(self, envelope: Envelope) -> Accepted:
        raise AssertionError("queries are never published one-way")

    async def request(self, envelope: Envelope, *, one_way: bool = True) -> Envelope | Accepted:
        assert not one_way
        self.asked.append(envelope)
        await asyncio.sleep(0)
        if envelope.type == "count":
            return Envelope(source="x", type="count.reply", data="many",
                            datacontenttype="application/json")
        cid = envelope.data["id"]
        if cid == 0:
            return failure_envelope(envelope, "not-found", "no customer 0", 404)
        return Envelope(source="crm", type="customer.reply", datacontenttype="application/json",
                        data={"id": cid, "name": f"C{cid}", "friend": {"id": 9, "name": "F"}})


@pytest.fixture
def served(tmp_path: Path, serve_routes: Callable[[list[HttpRoute]], str]
           ) -> tuple[str, AnsweringContext]:
    (tmp_path / "api.graphql").write_text(SDL)
    ctx = AnsweringContext(tmp_path)
    inbound = GraphqlInbound(GraphqlInboundSettings(path="/g", sdl="api.graphql", max_depth=3,
                                                    max_aliases=2, max_fields=12), ctx)
    return serve_routes(inbound.routes) + "/g", ctx


def ask(url: str, query: str) -> dict[str, Any]:
    return httpx.post(url, json={"query": query}, timeout=10).json()


def test_fields_resolve_through_routes_with_partial_failures(served: Any) -> None:
    url, ctx = served
    body = ask(url, "{ a: customer(id: 1) { name friend { name } } b: customer(id: 0) { name } }")
    assert body["data"] == {"a": {"name": "C1", "friend": {"name": "F"}}, "b": None}
    (error,) = body["errors"]
    assert error["path"] == ["b"] and error["message"] == "no customer 0"
    assert error["extensions"] == {"code": "NOT_FOUND", "status": 404}
    assert [e.data for e in ctx.asked] == [{"id": 1}, {"id": 0}]


def test_an_answer_that_does_not_fit_the_sdl_is_an_error(served: Any) -> None:
    url, _ = served
    body = ask(url, "{ count }")
    assert body["data"] == {"count": None}
    assert "Int cannot represent" in body["errors"][0]["message"]


@pytest.mark.parametrize(("query", "says"), [
    ("{ customer(id: 1) { friend { friend { name } } } }", "nested 4 levels"),
    ("{ a: customer(id: 1) { name } b: customer(id: 2) { name } c: customer(id: 3) { name } }",
     "more than 2 aliases"),
    ("fragment F on Customer { id name friend { id name } } "
     "{ customer(id: 1) { ...F friend { ...F } } }", "nested"),
    ("fragment F on Customer { id name id name id name id name } "
     "{ customer(id: 1) { ...F friend { ...F } } }", "more than 12 fields"),
])
def test_queries_past_the_limits_are_refused_before_anything_is_asked(
        served: Any, query: str, says: str) -> None:
    url, ctx = served
    body = ask(url, query)
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert says in body["errors"][0]["message"]
    assert ctx.asked == []
