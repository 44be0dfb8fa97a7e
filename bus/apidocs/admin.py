"""The OpenAPI 3.1 document of the admin API (``/admin/openapi.json``).

Written here by hand, next to nothing else: ``tests/apidocs/test_admin_document.py`` checks
that every route the admin API serves is described (and nothing else), and the schemathesis
run in the suite checks every answer against it, so it cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from esb.adapters.openapi import PROBLEM_SCHEMA, problem_responses

OPENAPI_VERSION = "3.1.0"
_OBJ: dict[str, Any] = {"type": "object"}
_JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], description: str = "OK", status: str = "200",
        media: str = _JSON) -> dict[str, Any]:
    return {status: {"description": description, "content": {media: {"schema": schema}}}}


def _op(summary: str, responses: dict[str, Any], *errors: int, params: list[Any] | None = None,
        body: dict[str, Any] | None = None, op_id: str, tag: str) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "tags": [tag],
                          "responses": {**responses, **problem_responses(401, 403, *errors)}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    return op


def _query(name: str, schema: dict[str, Any], description: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_NULLABLE_STR = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Problem": PROBLEM_SCHEMA,
    "Status": {"type": "object", "required": ["instance", "bus", "routes", "destinations"],
               "properties": {"instance": _STR, "bus": _OBJ, "routes": _OBJ,
                              "queues": {"type": "object",
                                         "additionalProperties": _INT},
                              "destinations": {"type": "object",
                                               "additionalProperties": _OBJ},
                              "sources": _OBJ,
                              "instances": {"type": "array", "items": _ref("Instance")}}},
    "Instance": {"type": "object", "required": ["instance"],
                 "properties": {"instance": _STR, "host": _STR, "pid": _INT,
                                "version": _STR, "state": _STR,
                                "started_at": _STR, "route_version": _INT,
                                "bus_connected": {"type": "boolean"},
                                "destinations": {"type": "object",
                                                 "additionalProperties": _OBJ},
                                "self": {"type": "boolean"},
                                "last_seen_s": {"type": "number"}}},
    "Sent": {"type": "object", "required": ["id", "destinations"],
             "properties": {"id": _STR, "destinations": {"type": "array", "items": _STR}}},
    "RouteSetInForce": {"type": "object", "required": ["version", "routes"],
                        "properties": {"version": _INT, "digest": _STR,
                                       "routes": {"type": "array", "items": _OBJ}}},
    "VersionSummary": {"type": "object", "required": ["version", "digest", "files"],
                       "properties": {"version": _INT, "digest": _STR,
                                      "deployed_at": _STR, "deployed_by": _STR,
                                      "note": _NULLABLE_STR,
                                      "rollback_of": {"type": ["integer", "null"]},
                                      "files": {"type": "array", "items": _STR},
                                      "running": {"type": "boolean"},
                                      "unchanged": {"type": "boolean"}}},
    "Version": {"type": "object", "required": ["version", "files"],
                "properties": {"version": _INT, "digest": _STR,
                               "files": {"type": "object", "additionalProperties": _STR}}},
    "Versions": {"type": "object", "required": ["versions"],
                 "properties": {"running": {"type": ["integer", "null"]}, "instance": _STR,
                                "versions": {"type": "array",
                                             "items": _ref("VersionSummary")}}},
    "RouteFiles": {"type": "object", "required": ["files"],
                   "properties": {"files": {"type": "object", "minProperties": 1,
                                            "additionalProperties": _STR},
                                  "by": _STR, "note": _STR,
                                  "force": {"type": "boolean",
                                            "description": "Store a new version even when "
                                                           "the latest has these files"}}},
    "Rollback": {"type": "object",
                 "properties": {"version": {"type": ["integer", "null"]}, "by": _STR,
                                "force": {"type": "boolean"}}},
    "Diff": {"type": "object", "required": ["a", "b", "files"],
             "properties": {"a": _ref("VersionSummary"), "b": _ref("VersionSummary"),
                            "files": {"type": "array", "items": {
                                "type": "object", "required": ["name", "status", "diff"],
                                "properties": {"name": _STR, "status": {
                                    "enum": ["added", "removed", "modified"]},
                                               "diff": _STR}}}}},
    "RouteTests": {"type": "object", "required": ["cases", "passed", "failed"],
                   "properties": {"version": {"type": ["integer", "null"]},
                                  "cases": {"type": "array", "items": _OBJ},
                                  "passed": _INT, "failed": _INT}},
    "RouteTestRequest": {"type": "object",
                         "description": "The route files to test, or a stored version",
                         "properties": {"files": {"type": "object", "minProperties": 1,
                                                  "additionalProperties": _STR},
                                        "version": _INT}},
    "DeadLetterList": {"type": "object", "required": ["queue", "items"],
                       "properties": {"queue": _STR, "items": {"type": "array",
                                                               "items": _ref("DeadLetter")}}},
    "DeadLetter": {"type": "object", "required": ["id", "type", "attempts", "at"],
                   "properties": {"id": _STR, "type": _STR, "source": _STR,
                                  "endpoint": _NULLABLE_STR, "destination": _NULLABLE_STR,
                                  "route": _NULLABLE_STR, "key": _NULLABLE_STR,
                                  "attempts": _INT, "error": _NULLABLE_STR, "at": _STR}},
    "CloudEvent": {"type": "object", "required": ["id", "source", "type", "specversion"],
                   "properties": {"id": _STR, "source": _STR, "type": _STR,
                                  "specversion": _STR}},
    "Replay": {"type": "object",
               "properties": {"ids": {"type": "array", "items": _STR},
                              "all": {"type": "boolean"},
                              "destination": _STR,
                              "wait": {"type": "number", "minimum": 0, "maximum": 300,
                                       "description": "Seconds to follow the replayed "
                                                      "envelopes' delivery"}}},
    "Purged": {"type": "object", "required": ["purged"], "properties": {"purged": _INT}},
    "Trace": {"type": "object", "required": ["id", "events"],
              "properties": {"id": _STR, "since": _STR,
                             "events": {"type": "array", "items": {
                                 "type": "object",
                                 "required": ["id", "at", "step", "instance", "detail"],
                                 "properties": {"id": _STR, "at": _STR, "step": _STR,
                                                "instance": _STR, "detail": _OBJ}}}}},
    "TraceSearch": {"type": "object", "required": ["ids"],
                    "properties": {"ids": {"type": "array", "items": _STR},
                                   "since": _STR}},
    "Stats": {"type": "object", "required": ["interval_s", "samples"],
              "properties": {"interval_s": {"type": "number"},
                             "samples": {"type": "array", "items": {
                                 "type": "object", "required": ["at", "destinations"],
                                 "properties": {"at": {"type": "number"},
                                                "destinations": {
                                                    "type": "object",
                                                    "additionalProperties": _OBJ}}}}}},
    "Plugins": {"type": "object", "required": ["adapters", "transformers"],
                "properties": {"adapters": {"type": "array", "items": _OBJ},
                               "transformers": {"type": "array", "items": _OBJ}}},
}


def _deadletter_paths(which: str, label: str) -> dict[str, Any]:
    tag = "dead letters"
    base = f"/admin/{which}"
    filters = [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 100000},
               "How many to read (default 100)"),
        _query("destination", _STR, "Only those that failed at this destination"),
        _query("error", _STR, "Only those whose error contains this text (any case)"),
        _query("since", _STR, "Only those last handled within this window (15m, 2h, 7d)"),
    ]
    return {
        base: {"get": _op(f"List the {label}", _ok(_ref("DeadLetterList")), 400,
                          params=filters, op_id=f"{which}_list", tag=tag)},
        f"{base}/{{id}}": {"get": _op(f"One {label} envelope (by id or unique id prefix), "
                                      "with its attempts and hops",
                                      _ok(_ref("CloudEvent")), 400, 404, 409,
                                      params=[_path_param("id", _STR)],
                                      op_id=f"{which}_show", tag=tag)},
        f"{base}/replay": {"post": _op(
            f"Replay {label} envelopes (by id, or all); progress streams as JSON lines",
            _ok({"type": "string"}, "JSON lines: {scanned,total}... then {replayed,left} "
                "or {error}", media="application/x-ndjson"),
            400, 404, body=_ref("Replay"), op_id=f"{which}_replay", tag=tag)},
        f"{base}/purge": {"post": _op(f"Delete every {label} envelope", _ok(_ref("Purged")),
                                      400, op_id=f"{which}_purge", tag=tag)},
    }


def admin_document(server: str | None = None) -> dict[str, Any]:
    """The admin API's document."""
    paths: dict[str, Any] = {
        "/admin/status": {"get": _op("Bus, route set, queue depths, destinations, instances",
                                     _ok(_ref("Status")), op_id="status", tag="operate")},
        "/admin/instances": {"get": _op("Every live instance, with per-destination rates",
                                        _ok({"type": "array", "items": _ref("Instance")}),
                                        op_id="instances", tag="operate")},
        "/admin/stats": {"get": _op(
            "Per-destination rates and latency percentiles over the last minutes",
            _ok(_ref("Stats")), 400,
            params=[_query("minutes", {"type": "integer", "minimum": 1, "maximum": 60},
                           "How far back (default 15)")],
            op_id="stats", tag="operate")},
        "/admin/plugins": {"get": _op("Installed adapters and transformers",
                                      _ok(_ref("Plugins")), op_id="plugins", tag="operate")},
        "/admin/send": {"post": {
            **_op("Put one message on the bus", _ok(_ref("Sent"), "Accepted", "202"), 400, 503,
                  params=[_query("type", {"type": "string", "minLength": 1}, "Envelope type",
                                 True),
                          _query("source", {"type": "string", "minLength": 1},
                                 "Envelope source (a source's name enters through it)", True)],
                  op_id="send", tag="operate"),
            "requestBody": {"required": True, "content": {
                _JSON: {"schema": {}}, "text/plain": {"schema": _STR},
                "application/xml": {"schema": _STR}}}}},
        "/admin/routes": {"get": _op("The route set in force", _ok(_ref("RouteSetInForce")),
                                     op_id="routes", tag="routes")},
        "/admin/routes/versions": {"get": _op("Every stored version, oldest first",
                                              _ok(_ref("Versions")), 503,
                                              op_id="route_versions", tag="routes")},
        "/admin/routes/versions/{n}": {"get": _op(
            "One version with its files", _ok(_ref("Version")), 404,
            params=[_path_param("n", {"type": "integer", "minimum": 0})],
            op_id="route_version", tag="routes")},
        "/admin/routes/deploy": {"post": _op(
            "Validate and deploy a set of route files (refused whole on any problem)",
            {**_ok(_ref("VersionSummary"), "Stored and running", "201"),
             **_ok(_ref("VersionSummary"), "The latest version has these files already "
                   "(`unchanged: true`); nothing stored")}, 400, 422, 503,
            body=_ref("RouteFiles"), op_id="route_deploy", tag="routes")},
        "/admin/routes/rollback": {"post": _op(
            "Deploy an earlier version again (default: the one before the running one)",
            _ok(_ref("VersionSummary"), "Stored and running", "201"), 400, 404, 409, 422, 503,
            body=_ref("Rollback"), op_id="route_rollback", tag="routes")},
        "/admin/routes/diff": {"get": _op(
            "Unified diff of each changed file between two versions", _ok(_ref("Diff")),
            400, 404,
            params=[_query("a", _INT, "From version", True),
                    _query("b", _INT, "To version", True)],
            op_id="route_diff", tag="routes")},
        "/admin/routes/test": {"post": _op(
            "Run the tests: cases of route files (or of a stored version); nothing is sent",
            _ok(_ref("RouteTests")), 400, 404, 422, body=_ref("RouteTestRequest"),
            op_id="route_test", tag="routes")},
        "/admin/trace": {"get": _op(
            "Envelope ids by idempotency key or correlation id",
            _ok(_ref("TraceSearch")), 400, 503, 504,
            params=[_query("key", {"type": "string", "minLength": 1}, "Idempotency key"),
                    _query("correlation", {"type": "string", "minLength": 1},
                           "Correlation id"),
                    _query("since", _STR, "Window (default 1h)")],
            op_id="trace_search", tag="trace")},
        "/admin/trace/{id}": {"get": _op(
            "Every step of one envelope (by id, unique id prefix or idempotency key), from "
            "every instance", _ok(_ref("Trace")), 400, 404, 409, 503, 504,
            params=[_path_param("id", _STR), _query("since", _STR, "Window (default 1h)")],
            op_id="trace", tag="trace")},
        "/admin/openapi.json": {"get": _op("This document", _ok(_OBJ), op_id="admin_openapi",
                                           tag="operate")},
        **_deadletter_paths("dlq", "dead-letter"),
        **_deadletter_paths("unroutable", "unroutable"),
    }
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "esb admin API", "version": "1",
                 "description": "Operate a running esb daemon: what `esb` commands and the "
                                "console use. Loopback clients only unless admin.remote is "
                                "set; every error is RFC 9457 problem+json."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "The admin token (admin.token)"},
                "consoleSession": {"type": "apiKey", "in": "cookie", "name": "esb_console",
                                   "description": "A console session; unsafe methods also "
                                                  "need the X-CSRF-Token header"}}},
        "security": [{"adminToken": []}, {"consoleSession": []}],
    }
    if server:
        doc["servers"] = [{"url": server}]
    return doc
