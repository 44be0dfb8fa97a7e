"""GraphQL inbound (GraphQL-over-HTTP, POST ``application/json``).

Status codes: ``application/json`` responses answer 200 for parse, validation and execution
errors (the legacy watershed of the GraphQL-over-HTTP spec); ``application/graphql-response+json``
(when the client's Accept names it) answers 400 when the request failed before execution.
Unparsable requests are 400, wrong content types 415, oversize bodies 413, and a bus that
could not confirm an envelope 503 with ``extensions.code = BUS_UNAVAILABLE``
(``TRANSFORM_DEFERRED`` when a transform step asked for a retry).

With ``auth:``, a request that fails authentication is answered 401 with ``WWW-Authenticate``
and one error whose ``extensions.code`` is ``UNAUTHENTICATED`` (before the body is read); the
principal of an authenticated call rides in each envelope's ``esbheaders.principal``.
"""

from __future__ import annotations

from inspect import isawaitable
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
    get_named_type,
    get_operation_ast,
    validate,
)
from graphql.language import Lexer, Source
from graphql.language.parser import Parser
from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.auth.inbound import Unauthorized, authenticate, build_authenticator
from esb.adapters.graphql.limits import QueryLimits, TooComplex, check_operation
from esb.adapters.graphql.schema import load_schema, wire_mutations, wire_queries
from esb.adapters.graphql.settings import GraphqlInboundSettings
from esb.adapters.spec import HttpInbound, HttpRoute, InboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, TransformDeferred
from esb.bus.httpbody import BodyTooLarge, EncodingRefused, read_body
from esb.bus.payload import JsonTooDeep, loads_json
from esb.bus.reply import problem_of

LEGACY = "application/json"
MODERN = "application/graphql-response+json"


def _error(message: str, code: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


def _format(errors: list[GraphQLError], code: str | None,
            request_error: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """Formatted errors with an ``extensions.code``, and whether the bus was unavailable.
    Request errors (before execution) all take ``code``."""
    out, bus_down = [], False
    for error in errors:
        formatted = dict(error.formatted)
        given: Any = formatted.get("extensions") or {}
        extensions: dict[str, Any] = dict(given)
        if isinstance(error.original_error, BusUnavailable):
            bus_down = True
            extensions["code"] = "TRANSFORM_DEFERRED" \
                if isinstance(error.original_error, TransformDeferred) else "BUS_UNAVAILABLE"
        elif request_error and code:
            extensions["code"] = code
        elif error.original_error is not None:
            extensions.setdefault("code", "INTERNAL_SERVER_ERROR")
        elif code:
            extensions.setdefault("code", code)
        formatted["extensions"] = extensions
        out.append(formatted)
    return out, bus_down


class GraphqlInbound(HttpInbound):
    """Serves one GraphQL endpoint built from an SDL."""

    def __init__(self, settings: GraphqlInboundSettings, ctx: InboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        # Query fields resolve through request/reply routes, where the runtime has them.
        self.schema = load_schema(ctx.config_dir / settings.sdl, answers_queries=ctx.replies)
        wire_mutations(self.schema, self._publish)
        if ctx.replies:
            wire_queries(self.schema, self._resolve)
        self.authenticator = build_authenticator(settings.auth, ctx.config_dir)
        self.limits = settings.limits
        self.routes = [HttpRoute(settings.path, ("POST",), self.handle)]

    def _envelope(self, field: str, arguments: dict[str, Any],
                  info: GraphQLResolveInfo) -> Envelope:
        request: Request = info.context
        principal = getattr(request.state, "principal", None)
        return Envelope(type=field, source=self.settings.source or self.ctx.name,
                        datacontenttype="application/json", data=arguments,
                        traceparent=request.headers.get("traceparent"),
                        esbendpoint=self.ctx.name,
                        esbheaders={"principal": principal} if principal else {})

    async def _resolve(self, field: str, arguments: dict[str, Any],
                       info: GraphQLResolveInfo) -> Any:
        """One query field → one request through the request/reply route that answers it
        (nothing is published when none does); the answer is the field's value, which
        graphql-core then checks against the SDL. The fields of one query run concurrently."""
        return field_value(await self.ctx.request(self._envelope(field, arguments, info),
                                                  one_way=False))

    async def _publish(self, field: str, arguments: dict[str, Any],
                       info: GraphQLResolveInfo) -> Any:
        """One mutation field → one envelope; returns what the field's type asks for: a
        request/reply route's answer, else the envelope id (or a receipt)."""
        envelope = self._envelope(field, arguments, info)
        accepted = await self.ctx.request(envelope)
        if isinstance(accepted, Envelope):  # a request/reply route answered
            return field_value(accepted)
        if isinstance(get_named_type(info.return_type), GraphQLScalarType):
            return accepted.id
        return {"id": accepted.id, "status": "ACCEPTED", "duplicate": accepted.duplicate,
                "destinations": list(accepted.destinations)}

    async def handle(self, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        media = MODERN if MODERN in accept else LEGACY
        try:
            request.state.principal = await authenticate(self.authenticator, request)
        except Unauthorized as exc:
            return self._reply(media, 401, errors=[_error(exc.detail, "UNAUTHENTICATED")],
                               headers={"WWW-Authenticate": exc.challenge})
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return self._reply(media, 415, errors=[_error(
                "POST the request as application/json", "BAD_REQUEST")])
        try:
            body = await read_body(request, self.settings.max_body)
        except BodyTooLarge as exc:
            return self._reply(media, 413, errors=[_error(str(exc), "BAD_REQUEST")])
        except EncodingRefused as exc:
            return self._reply(media, exc.status, errors=[_error(str(exc), "BAD_REQUEST")])
        try:
            params = read_request(body, self.ctx.json_depth)
        except RequestRefused as exc:
            return self._reply(media, 400, errors=exc.errors)
        return await self._run(request, media, params)

    async def _run(self, request: Request, media: str, params: dict[str, Any]) -> Response:
        request_error = 400 if media == MODERN else 200
        try:
            document = prepare(self.schema, params, self.limits)
        except RequestRefused as exc:
            return self._reply(media, request_error, errors=exc.errors)
        try:
            result = execute(self.schema, document, variable_values=params.get("variables"),
                             operation_name=params.get("operationName"),
                             context_value=request)
            if isawaitable(result):
                result = await result
        except RecursionError:  # the limits should make this unreachable; never a 500
            return self._reply(media, request_error, errors=[_error(
                "the request is too complex to execute", "QUERY_TOO_COMPLEX")])
        assert isinstance(result, ExecutionResult)
        if result.errors and result.data is None and all(e.path is None for e in result.errors):
            errors, _ = _format(result.errors, "BAD_USER_INPUT", True)  # variables did not coerce
            return self._reply(media, request_error, errors=errors)
        errors, bus_down = _format(result.errors or [], None)
        return self._reply(media, 503 if bus_down else 200, data=result.data, errors=errors,
                           executed=True)

    @staticmethod
    def _reply(media: str, status: int, *, data: Any = None,
               errors: list[dict[str, Any]] | None = None, executed: bool = False,
               headers: dict[str, str] | None = None) -> Response:
        """``data`` is present once execution started (even as null), absent before."""
        body: dict[str, Any] = {}
        if errors:
            body["errors"] = errors
        if executed:
            body["data"] = data
        if status == 503:
            headers = {**(headers or {}), "Retry-After": "5"}
        return Response(orjson.dumps(body), status_code=status, headers=headers,
                        media_type=f"{media}; charset=utf-8")


class RequestRefused(Exception):
    """The request is refused before execution; ``errors`` are its GraphQL errors."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e.get("message")) for e in errors))
        self.errors = errors


def read_request(body: bytes, json_depth: int) -> dict[str, Any]:
    """The GraphQL-over-HTTP parameters of a JSON body (RequestRefused: BAD_REQUEST)."""
    try:
        params = loads_json(body, json_depth)
    except JsonTooDeep as exc:
        raise RequestRefused([_error(str(exc), "BAD_REQUEST")]) from None
    except orjson.JSONDecodeError as exc:
        raise RequestRefused([_error(f"malformed JSON: {exc}", "BAD_REQUEST")]) from None
    problem = _check_params(params)
    if problem:
        raise RequestRefused([_error(problem, "BAD_REQUEST")])
    return params  # type: ignore[no-any-return]


def prepare(schema: GraphQLSchema, params: dict[str, Any], limits: QueryLimits) -> DocumentNode:
    """Parse, bound (:mod:`.limits`, before validation: validation itself can be costly) and
    validate a request; the document to execute (one operation selected), or RequestRefused."""
    try:
        document = _parse(params["query"], limits.max_tokens)
    except GraphQLError as exc:
        errors, _ = _format([exc], "GRAPHQL_PARSE_FAILED")
        raise RequestRefused(errors) from None
    except RecursionError:
        raise RequestRefused([_error("the query nests too deeply to parse",
                                     "GRAPHQL_PARSE_FAILED")]) from None
    operation = get_operation_ast(document, params.get("operationName"))
    try:
        for candidate in [operation] if operation is not None else [
                d for d in document.definitions if isinstance(d, OperationDefinitionNode)]:
            check_operation(document, candidate, limits)
    except TooComplex as exc:
        raise RequestRefused([_error(str(exc), "QUERY_TOO_COMPLEX")]) from None
    try:
        validation = validate(schema, document)
    except RecursionError:
        raise RequestRefused([_error("the query nests too deeply to validate",
                                     "QUERY_TOO_COMPLEX")]) from None
    if validation:
        errors, _ = _format(validation, "GRAPHQL_VALIDATION_FAILED")
        raise RequestRefused(errors)
    if operation is None:
        raise RequestRefused([_error("operationName does not select one operation",
                                     "BAD_REQUEST")])
    if operation.operation == OperationType.SUBSCRIPTION:
        raise RequestRefused([_error("subscriptions are not supported", "BAD_REQUEST")])
    return document


def _parse(query: str, max_tokens: int) -> DocumentNode:
    """``graphql.parse``, leaving no reference cycle behind. graphql-core links each token to
    the one before it and the one after, so a parsed (or refused) query stayed, text and all,
    until the cyclic collector ran: a malformed 900 KiB query held 0.9 MiB a request. The
    links are cut once the document is parsed (it needs only its nodes' offsets)."""
    lexer = Lexer(Source(query))
    first: Any = lexer.token
    try:
        return Parser(lexer.source, max_tokens=max_tokens, lexer=lexer).parse_document()
    finally:
        while first is not None:
            following = first.next
            first.prev = first.next = None
            first = following


def field_value(reply: Envelope) -> Any:
    """A field's value from a request/reply answer; a failure is the field's error (its
    ``extensions`` name the failure: ``code`` NOT_FOUND, TIMEOUT, BACKEND ..., ``status``)."""
    failure = problem_of(reply)
    if failure is not None:
        raise GraphQLError(failure.detail, extensions={
            "code": failure.kind.upper().replace("-", "_"), "status": failure.status})
    if isinstance(reply.data, bytes):
        raise GraphQLError(f"the answer is binary ({reply.datacontenttype}); the route's reply "
                           "steps must make it JSON", extensions={"code": "BAD_REPLY"})
    return reply.data


def _check_params(params: Any) -> str | None:
    if not isinstance(params, dict):
        return "the request body must be a JSON object"
    if not isinstance(params.get("query"), str):
        return "'query' must be a string"
    if params.get("variables") is not None and not isinstance(params["variables"], dict):
        return "'variables' must be an object"
    if params.get("operationName") is not None and not isinstance(params["operationName"], str):
        return "'operationName' must be a string"
    return None
