"""What an inbound side tells the OpenAPI document about itself (``/openapi.json``).

An adapter that serves HTTP may set :attr:`~esb.adapters.spec.AdapterSpec.openapi` to a
:data:`Describe` function. The runtime calls it once per source with a :class:`SourceApi` (the
source's name and settings, plus what the running route set says about it) and merges the
:class:`ApiPaths` it returns into one OpenAPI 3.1 document.

The shared pieces every HTTP source answers with live here, so all of them read the same:
the problem+json schema (RFC 9457) and responses (:func:`problem_responses`), the security
scheme of a source's ``auth:`` (:func:`security_scheme`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from esb.adapters.auth.settings import ApiKeyInbound, BasicInbound, JwtInbound
from esb.bus.problem import PROBLEM_JSON

#: ``#/components/schemas/Problem`` — every error answer of every source.
PROBLEM_REF = "#/components/schemas/Problem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}

#: What each error status means for a caller of an inbound source.
PROBLEM_STATUSES: dict[int, str] = {
    400: "Malformed request: bad JSON/XML, a bad CloudEvent, a bad header value",
    401: "Missing or wrong credentials",
    404: "Not found",
    405: "Method not allowed",
    408: "The request was not sent in time",
    409: "Conflict",
    413: "The body exceeds the source's size limit",
    415: "The content type is not accepted here",
    422: "The request is well-formed but its content is refused",
    500: "Internal error (the body carries an id for the log; never a traceback)",
    502: "The backend failed",
    503: "The bus could not take the message: retry later (see Retry-After)",
    504: "The backend did not answer in time",
}


#: The header a problem response of a status carries.
_PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    503: {"Retry-After": {"description": "Seconds to wait before retrying",
                          "schema": {"type": "string"}}},
    401: {"WWW-Authenticate": {"description": "The challenge", "schema": {"type": "string"}}},
}


def problem_responses(*statuses: int) -> dict[str, dict[str, Any]]:
    """Problem responses for ``statuses`` (503 with ``Retry-After``, 401 with
    ``WWW-Authenticate``)."""
    out: dict[str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"description": PROBLEM_STATUSES.get(status, "Error"),
                                    "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}}
        if status in _PROBLEM_HEADERS:
            response["headers"] = _PROBLEM_HEADERS[status]
        out[str(status)] = response
    return out


def security_scheme(auth: ApiKeyInbound | BasicInbound | JwtInbound | None
                    ) -> dict[str, Any] | None:
    """The OpenAPI security scheme of an inbound ``auth:`` (``None`` without one)."""
    if auth is None:
        return None
    if isinstance(auth, ApiKeyInbound):
        if auth.query:
            return {"type": "apiKey", "in": "query", "name": auth.query}
        return {"type": "apiKey", "in": "header", "name": auth.header or "X-API-Key"}
    if isinstance(auth, BasicInbound):
        return {"type": "http", "scheme": "basic", "description": f"realm {auth.realm!r}"}
    return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "signed " + "/".join(auth.algorithms)}


@dataclass(frozen=True)
class SourceApi:
    """What the runtime knows of one source when describing it."""

    name: str
    settings: Any
    #: Request body schemas from the running route set: envelope type → the JSON Schema of a
    #: ``json-schema`` step on a route that takes that type from this source. The key ``None``
    #: holds the schema of a route with no condition on the type.
    request_schemas: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    #: Reply schemas of request/reply routes, by envelope type like ``request_schemas`` (a
    #: source whose routes answer the caller describes its ``200`` with them).
    reply_schemas: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    #: Description of the source from configuration (``description:``).
    description: str | None = None


@dataclass
class ApiPaths:
    """What a source adds to the document: path items and security schemes (by name)."""

    paths: dict[str, dict[str, Any]] = field(default_factory=dict)
    security_schemes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Named schemas the paths refer to as ``#/components/schemas/<name>``.
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)


Describe = Callable[[SourceApi], ApiPaths]
