"""The rest source in the OpenAPI document: its paths, methods, media types, headers, auth and
answers, with the request schema the running route set validates against.

A source at ``/in/shop`` serves three kinds of path, and each is described:

* ``/in/shop`` — the envelope type is the source's ``type`` (default ``<source>.received``);
* ``/in/shop/{type}`` — any type, named in the URL;
* ``/in/shop/<type>`` — one concrete path per envelope type a route validates with a
  ``json-schema`` step, carrying that schema (OpenAPI matches concrete paths before templated
  ones, so the generic path still covers every other type).
"""

from __future__ import annotations

import re
from typing import Any

from esb.adapters.openapi import ApiPaths, SourceApi, problem_responses, security_scheme
from esb.adapters.rest.inbound import MAX_KEY
from esb.adapters.rest.settings import RestInboundSettings
from esb.bus.envelope import CLOUDEVENTS_JSON

ACCEPTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {"id": {"type": "string", "description": "The envelope id"},
                   "status": {"const": "accepted"}},
}

_HEADERS: list[dict[str, Any]] = [
    {"name": "Idempotency-Key", "in": "header", "required": False,
     "description": "A repeated key within the idempotency window is answered with the first "
                    "request's result (and `Idempotent-Replayed: true`), never routed twice.",
     "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY}},
    {"name": "X-Correlation-ID", "in": "header", "required": False,
     "description": "Kept as the envelope's correlation id (first 200 characters).",
     "schema": {"type": "string"}},
    {"name": "traceparent", "in": "header", "required": False,
     "description": "W3C trace context, carried on the envelope.",
     "schema": {"type": "string"}},
]

_CLOUDEVENT: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvents 1.0 event in structured mode",
    "required": ["specversion", "id", "source", "type"],
    "properties": {"specversion": {"const": "1.0"}, "id": {"type": "string", "minLength": 1},
                   "source": {"type": "string", "minLength": 1},
                   "type": {"type": "string", "minLength": 1},
                   "subject": {"type": "string"}, "time": {"type": "string",
                                                           "format": "date-time"},
                   "datacontenttype": {"type": "string"}},
}


def _component(source: str, etype: str | None) -> str:
    raw = f"{source}.{etype}" if etype else f"{source}.request"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def _body(settings: RestInboundSettings, schema_ref: dict[str, Any] | None) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for media in settings.content_types:
        m = media.lower()
        if m == CLOUDEVENTS_JSON:
            event = dict(_CLOUDEVENT)
            if schema_ref is not None:
                event = {**event, "properties": {**event["properties"], "data": schema_ref}}
            content[m] = {"schema": event}
        elif m == "application/json" or m.endswith("+json"):
            content[m] = {"schema": schema_ref or {}}
        elif m.startswith("text/") or m.endswith("+xml") or m == "application/xml":
            content[m] = {"schema": {"type": "string"}}
        else:
            content[m] = {"schema": {"type": "string", "contentMediaType": m}}
    return {"required": True, "content": content}


def _operation(api: SourceApi, settings: RestInboundSettings, summary: str,
               schema_ref: dict[str, Any] | None, secured: bool,
               type_param: bool) -> dict[str, Any]:
    params = list(_HEADERS)
    if type_param:
        params.insert(0, {"name": "type", "in": "path", "required": True,
                          "description": "The envelope type",
                          "schema": {"type": "string", "pattern": r"^[^/]+$"}})
    responses: dict[str, Any] = {
        "202": {"description": "Accepted: the bus confirmed the envelope",
                "headers": {"Idempotent-Replayed": {
                    "description": "`true` when this answers a repeated Idempotency-Key",
                    "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref":
                                                            "#/components/schemas/Accepted"}}}},
    }
    statuses = [400, *([401] if secured else []), 413, 415, 422, 503]
    responses.update(problem_responses(*statuses))
    op: dict[str, Any] = {"summary": summary, "tags": [api.name], "parameters": params,
                          "requestBody": _body(settings, schema_ref), "responses": responses}
    if api.description:
        op["description"] = api.description
    return op


def describe(api: SourceApi) -> ApiPaths:
    """The paths of one rest source (none when it only polls)."""
    settings: RestInboundSettings = api.settings
    out = ApiPaths(schemas={"Accepted": ACCEPTED_SCHEMA})
    if settings.path is None:
        return out
    scheme = security_scheme(settings.auth)
    secured = scheme is not None
    if scheme is not None:
        out.security_schemes[f"{api.name}-auth"] = scheme

    def ref(etype: str | None, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        name = _component(api.name, etype)
        out.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def item(summary: str, etype: str | None, schema: dict[str, Any] | None,
             type_param: bool = False) -> dict[str, Any]:
        op_ref = ref(etype, schema)
        ops = {}
        for method in settings.methods:
            op = _operation(api, settings, summary, op_ref, secured, type_param)
            op["operationId"] = _operation_id(api.name, method, etype, type_param)
            if secured:
                op["security"] = [{f"{api.name}-auth": []}]
            ops[method.lower()] = op
        return ops

    base_type = settings.type or f"{api.name}.received"
    schemas = api.request_schemas
    base = settings.path
    out.paths[base] = item(f"Send a {base_type} message to {api.name}", base_type,
                           schemas.get(base_type, schemas.get(None)))
    prefix = "" if base == "/" else base
    for etype in sorted(t for t in schemas if t is not None and t != base_type):
        if "/" in etype or not etype:
            continue  # not expressible as one path segment
        out.paths[f"{prefix}/{etype}"] = item(f"Send a {etype} message to {api.name}", etype,
                                              schemas[etype])
    out.paths[f"{prefix}/{{type}}"] = item(f"Send a message of any type to {api.name}", None,
                                          schemas.get(None), type_param=True)
    return out


def _operation_id(source: str, method: str, etype: str | None, templated: bool) -> str:
    what = "any" if templated else (etype or "request")
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{source}_{method.lower()}_{what}")
