"""The rest source in the OpenAPI document: its paths, methods, media types, headers, auth and
answers, with the request schema the running route set validates against.

A source at ``/in/shop`` serves three kinds of path, and each is described:

* ``/in/shop`` — the envelope type is the source's ``type`` (default ``<source>.received``);
* ``/in/shop/{type}`` — any type, named in the URL;
* ``/in/shop/<type>`` — one concrete path per envelope type a route validates with a
  ``json-schema`` step, carrying that schema (OpenAPI matches concrete paths before templated
  ones, so the generic path still covers every other type).

A path with parameters (``/api/customers/{id}``, a request/reply facade) is described as it is,
with its path parameters and the typed query parameters of ``params``; GET and DELETE carry no
body. Types answered by a request/reply route get a ``200`` with the reply schema (the last
``json-schema`` step of the reply leg) and the failures a caller can meet (404, 502, 504). A
source with ``errors: fhir`` describes its failures as FHIR ``OperationOutcome``s.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from esb.adapters.openapi import ApiPaths, SourceApi, problem_responses, security_scheme
from esb.adapters.rest.fhir import FHIR_JSON, ISSUE_CODES
from esb.adapters.rest.inbound import BODILESS, MAX_KEY
from esb.adapters.rest.params import ParamType, path_names
from esb.adapters.rest.settings import RestInboundSettings
from esb.bus.envelope import CLOUDEVENTS_JSON
from esb.bus.payload import is_json, is_xml

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
        elif is_json(m):
            content[m] = {"schema": schema_ref or {}}
        elif m.startswith("text/") or is_xml(m):
            content[m] = {"schema": {"type": "string"}}
        else:
            content[m] = {"schema": {"type": "string", "contentMediaType": m}}
    return {"required": True, "content": content}


_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {kind: {"type": kind} for kind in get_args(ParamType)}

OPERATION_OUTCOME: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome",
    "required": ["resourceType", "issue"],
    "properties": {"resourceType": {"const": "OperationOutcome"},
                   "issue": {"type": "array", "minItems": 1, "items": {
                       "type": "object", "required": ["severity", "code"],
                       "properties": {"severity": {"enum": ["fatal", "error"]},
                                      "code": {"type": "string"},
                                      "diagnostics": {"type": "string"},
                                      "details": {"type": "object"}}}}},
}


def _parameters(settings: RestInboundSettings, type_param: bool) -> list[dict[str, Any]]:
    """Path parameters (the path's own and ``{type}``), then the headers, then the typed
    query parameters of ``params``."""
    path = settings.path or ""
    names = path_names(path)
    params = [{"name": name, "in": "path", "required": True,
               "schema": _PARAM_SCHEMAS[settings.params.get(name, "string")]} for name in names]
    if type_param:
        params.append({"name": "type", "in": "path", "required": True,
                       "description": "The envelope type",
                       "schema": {"type": "string", "pattern": r"^[^/]+$"}})
    params += _HEADERS
    params += [{"name": name, "in": "query", "required": False,
                "schema": _PARAM_SCHEMAS[kind]}
               for name, kind in settings.params.items() if name not in names]
    return params


def _failures(settings: RestInboundSettings, statuses: list[int]) -> dict[str, Any]:
    """The error answers: problem+json, or OperationOutcomes for ``errors: fhir``."""
    if settings.errors != "fhir":
        return problem_responses(*statuses)
    return {str(status): {"description": f"FHIR {ISSUE_CODES.get(status, 'exception')}",
                          "content": {FHIR_JSON: {"schema": {
                              "$ref": "#/components/schemas/OperationOutcome"}}}}
            for status in statuses}


def _operation(api: SourceApi, settings: RestInboundSettings, method: str, summary: str,
               schema_ref: dict[str, Any] | None, reply_ref: dict[str, Any] | None,
               secured: bool, type_param: bool) -> dict[str, Any]:
    params = _parameters(settings, type_param)
    responses: dict[str, Any] = {
        "202": {"description": "Accepted: the bus confirmed the envelope",
                "headers": {"Idempotent-Replayed": {
                    "description": "`true` when this answers a repeated Idempotency-Key",
                    "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref":
                                                            "#/components/schemas/Accepted"}}}},
    }
    statuses = [400, *([401] if secured else []), 413, 415, 422, 503]
    if reply_ref is not None:
        responses["200"] = {"description": "The destination's answer, through the route's "
                                           "reply leg (request/reply)",
                            "content": {"application/json": {"schema": reply_ref}}}
        statuses += [404, 502, 504]
    responses.update(_failures(settings, sorted(statuses)))
    op: dict[str, Any] = {"summary": summary, "tags": [api.name], "parameters": params,
                          "responses": responses}
    if method not in BODILESS:
        op["requestBody"] = _body(settings, schema_ref)
    if api.description:
        op["description"] = api.description
    return op


def describe(api: SourceApi) -> ApiPaths:
    """The paths of one rest source (none when it only polls)."""
    settings: RestInboundSettings = api.settings
    out = ApiPaths(schemas={"Accepted": ACCEPTED_SCHEMA})
    if settings.path is None:
        return out
    if settings.errors == "fhir":
        out.schemas["OperationOutcome"] = OPERATION_OUTCOME
    scheme = security_scheme(settings.auth)
    secured = scheme is not None
    if scheme is not None:
        out.security_schemes[f"{api.name}-auth"] = scheme

    def ref(etype: str | None, schema: dict[str, Any] | None,
            suffix: str = "") -> dict[str, Any] | None:
        if schema is None:
            return None
        name = _component(api.name, etype) + suffix
        out.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def reply_ref(etype: str | None) -> dict[str, Any] | None:
        replies = api.reply_schemas
        schema = replies.get(etype, replies.get(None)) if etype else replies.get(None)
        if schema == {}:
            return {}
        return ref(etype, schema, ".reply")

    def item(summary: str, etype: str | None, schema: dict[str, Any] | None,
             type_param: bool = False) -> dict[str, Any]:
        op_ref = ref(etype, schema)
        answer_ref = reply_ref(etype)
        ops = {}
        for method in settings.methods:
            op = _operation(api, settings, method, summary, op_ref, answer_ref, secured,
                            type_param)
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
    if path_names(base):  # a templated path is served as it is, with no /{type} below it
        return out
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
