"""GraphQL outbound against a graphql-core server (Starlette + uvicorn) on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLError, build_schema, execute, parse, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from esb.adapters.graphql.outbound import GraphqlOutbound
from esb.adapters.graphql.settings import GraphqlOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError

SDL = """
type Query { ok: Boolean }
input CustomerInput { id: ID!, name: String! }
type Customer { id: ID!, name: String! }
type Mutation { upsertCustomer(input: CustomerInput!, source: String): Customer }
"""
DOCUMENT = """mutation Upsert($input: CustomerInput!, $source: String) {
  upsertCustomer(input: $input, source: $source) { id name }
}
query Other { ok }
"""


def crm_app(received: list[dict[str, Any]]) -> Starlette:
    """A CRM: ``name`` "busy" → error code UPSTREAM_BUSY, "taken" → BAD_USER_INPUT."""
    schema = build_schema(SDL)

    def upsert(_root: Any, _info: Any, input: dict[str, Any],
               source: str | None = None) -> dict[str, Any]:
        if input["name"] == "busy":
            raise GraphQLError("try later", extensions={"code": "UPSTREAM_BUSY"})
        if input["name"] == "taken":
            raise GraphQLError("name taken", extensions={"code": "BAD_USER_INPUT"})
        return input

    schema.mutation_type.fields["upsertCustomer"].resolve = upsert  # type: ignore[union-attr]

    def errors(errs: list[GraphQLError], code: str) -> JSONResponse:
        return JSONResponse({"errors": [{**e.formatted, "extensions": {"code": code}}
                                        for e in errs]})

    async def endpoint(request: Request) -> JSONResponse:
        body = await request.json()
        received.append({"body": body, "headers": dict(request.headers)})
        if request.path_params.get("mode") == "broken":
            return JSONResponse({"message": "oops"}, status_code=500)
        if request.path_params.get("mode") == "slow":
            await asyncio.sleep(0.8)
        try:
            document = parse(body["query"])
        except GraphQLError as exc:
            return errors([exc], "GRAPHQL_PARSE_FAILED")
        problems = validate(schema, document)
        if problems:
            return errors(problems, "GRAPHQL_VALIDATION_FAILED")
        result = execute(schema, document, variable_values=body.get("variables"),
                         operation_name=body.get("operationName"))
        assert not asyncio.iscoroutine(result)
        if result.errors and result.data is None and result.errors[0].path is None:
            return errors(result.errors, "BAD_USER_INPUT")
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return JSONResponse(out)

    return Starlette(routes=[Route("/graphql", endpoint, methods=["POST"]),
                             Route("/graphql/{mode}", endpoint, methods=["POST"])])


@pytest.fixture
def crm(serve_app: Callable[[object], str]) -> tuple[str, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    return serve_app(crm_app(received)) + "/graphql", received


async def deliver(folder: Path, url: str, env: Envelope, **settings: Any) -> None:
    (folder / "upsert.graphql").write_text(DOCUMENT)
    cfg = GraphqlOutboundSettings.model_validate({
        "url": url, "document": "upsert.graphql", "operation_name": "Upsert",
        "variables": {"input": "data.customer", "source": "$source"}, **settings})
    async with httpx.AsyncClient() as client:
        out = GraphqlOutbound(cfg, OutboundContext("crm", folder, lambda: client))
        await out.start()
        try:
            await out.send(env)
        finally:
            await out.stop()


def customer(name: str, **extra: Any) -> Envelope:
    return Envelope(source="shop", type="customer.changed",
                    data={"customer": {"id": "C-1", "name": name, **extra}})


async def test_success(crm: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    url, received = crm
    env = customer("Ada")
    await deliver(tmp_path, url, env, headers={"x-api-key": "k"})
    body, headers = received[0]["body"], received[0]["headers"]
    assert body["operationName"] == "Upsert"
    assert body["variables"] == {"input": {"id": "C-1", "name": "Ada"}, "source": "shop"}
    assert headers["x-api-key"] == "k" and headers["idempotency-key"] == env.id


@pytest.mark.parametrize(("env", "error", "code"), [
    (customer("taken"), PermanentError, "BAD_USER_INPUT"),
    (customer("busy"), TransientError, "UPSTREAM_BUSY"),
    (customer("Ada", age=3), PermanentError, "BAD_USER_INPUT"),  # variable does not coerce
    (Envelope(source="s", type="t", data={}), PermanentError, "BAD_USER_INPUT"),  # missing
])
async def test_errors_under_200(crm: tuple[str, list[dict[str, Any]]], tmp_path: Path,
                                env: Envelope, error: type, code: str) -> None:
    url, _ = crm
    with pytest.raises(error, match=code) as info:
        await deliver(tmp_path, url, env)
    assert info.value.status == 200


async def test_validation_failure_is_permanent(crm: tuple[str, list[dict[str, Any]]],
                                               tmp_path: Path) -> None:
    url, _ = crm
    (tmp_path / "bad.graphql").write_text("mutation { deleteEverything }")
    cfg = GraphqlOutboundSettings(url=url, document="bad.graphql")
    async with httpx.AsyncClient() as client:
        out = GraphqlOutbound(cfg, OutboundContext("crm", tmp_path, lambda: client))
        with pytest.raises(PermanentError, match="GRAPHQL_VALIDATION_FAILED"):
            await out.send(customer("Ada"))


async def test_custom_permanent_codes(crm: tuple[str, list[dict[str, Any]]],
                                      tmp_path: Path) -> None:
    url, _ = crm
    with pytest.raises(PermanentError):
        await deliver(tmp_path, url, customer("busy"), permanent_error_codes=["UPSTREAM_BUSY"])


async def test_500_timeout_and_refused_are_transient(crm: tuple[str, list[dict[str, Any]]],
                                                     tmp_path: Path) -> None:
    url, _ = crm
    with pytest.raises(TransientError) as info:
        await deliver(tmp_path, url + "/broken", customer("Ada"))
    assert info.value.status == 500
    with pytest.raises(TransientError, match="timed out"):
        await deliver(tmp_path, url + "/slow", customer("Ada"), timeout=0.2)
    with pytest.raises(TransientError):
        await deliver(tmp_path, "http://127.0.0.1:9/graphql", customer("Ada"))


def test_document_problems_are_config_errors(tmp_path: Path) -> None:
    ctx = OutboundContext("crm", tmp_path, httpx.AsyncClient)
    (tmp_path / "d.graphql").write_text(DOCUMENT)
    with pytest.raises(ConfigError, match="operation_name"):
        GraphqlOutbound(GraphqlOutboundSettings(url="http://x/", document="d.graphql"), ctx)
    with pytest.raises(ConfigError, match="Nope"):
        GraphqlOutbound(GraphqlOutboundSettings(url="http://x/", document="d.graphql",
                                                operation_name="Nope"), ctx)
    (tmp_path / "e.graphql").write_text("mutation {")
    with pytest.raises(ConfigError):
        GraphqlOutbound(GraphqlOutboundSettings(url="http://x/", document="e.graphql"), ctx)
