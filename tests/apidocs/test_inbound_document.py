"""The inbound sources' OpenAPI document, built from a configuration and a route set: paths,
methods, media types, headers, auth schemes, problem responses and the request schema of a
route's json-schema step — and it is a valid OpenAPI 3.1 document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import validate

from esb.bus.apidocs.inbound import inbound_document
from esb.bus.config.loader import load_config
from esb.bus.plugins import adapters

ORDER_SCHEMA = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "https://example.com/order.json",
                "type": "object", "required": ["orderId", "lines"],
                "properties": {"orderId": {"type": "string"},
                               "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}}},
                "$defs": {"line": {"type": "object", "required": ["sku"],
                                   "properties": {"sku": {"type": "string"}}}}}


ENV = {"TOKEN": "t", "KEY": "k1-secret", "PASSWORD": "pw-secret", "JWT": "s3cret"}


def build(tmp_path: Path, sources: dict[str, Any], routes: list[dict[str, Any]],
          transformers: dict[str, Any] | None = None) -> dict[str, Any]:
    (tmp_path / "schemas").mkdir(exist_ok=True)
    (tmp_path / "schemas" / "order.json").write_text(json.dumps(ORDER_SCHEMA))
    cfg = {"sources": sources,
           "destinations": {"erp": {"adapter": "rest", "url": "http://127.0.0.1:9/erp"}},
           "transformers": transformers or {}, "admin": {"token": "${TOKEN}"}}
    path = tmp_path / "esb.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path, env=ENV, base_dir=tmp_path)
    files = {"r.yaml": yaml.safe_dump({"routes": routes})}
    doc = inbound_document(loaded, adapters(), files, route_version=3,
                           server="http://127.0.0.1:8080")
    validate(doc)  # openapi-spec-validator: a valid OpenAPI 3.1 document
    return doc


def test_a_source_with_a_validating_route_gets_that_schema_per_type(tmp_path: Path) -> None:
    doc = build(tmp_path,
                {"shop": {"adapter": "rest", "path": "/in/shop", "methods": ["POST", "PUT"],
                          "content_types": ["application/json", "application/xml",
                                            "application/cloudevents+json"]}},
                [{"name": "orders", "from": ["shop"], "match": {"type": ["order.created"]},
                  "transform": [{"json-schema": "schemas/order.json"}], "to": ["erp"]}])
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["version"] == "routes-v3"
    assert set(doc["paths"]) == {"/in/shop", "/in/shop/order.created", "/in/shop/{type}"}
    typed = doc["paths"]["/in/shop/order.created"]
    assert set(typed) == {"post", "put"}
    body = typed["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/xml", "application/cloudevents+json"}
    ref = body["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/shop.order.created"
    embedded = doc["components"]["schemas"]["shop.order.created"]
    # the schema's own references now point where it sits in the document; its $id is gone
    assert embedded["properties"]["lines"]["items"]["$ref"] == \
        "#/components/schemas/shop.order.created/$defs/line"
    assert "$id" not in embedded
    assert body["application/cloudevents+json"]["schema"]["properties"]["data"] == {"$ref": ref}
    assert body["application/xml"]["schema"] == {"type": "string"}
    # the generic paths carry no schema (their type is not the validated one)
    assert doc["paths"]["/in/shop"]["post"]["requestBody"]["content"]["application/json"][
        "schema"] == {}
    params = {p["name"]: p for p in typed["post"]["parameters"]}
    assert params["Idempotency-Key"]["schema"]["maxLength"] == 200
    assert "X-Correlation-ID" in params
    any_type = {p["name"] for p in doc["paths"]["/in/shop/{type}"]["post"]["parameters"]}
    assert "type" in any_type
    responses = typed["post"]["responses"]
    assert set(responses) == {"202", "400", "413", "415", "422", "503"}  # no auth: no 401
    assert responses["503"]["headers"]["Retry-After"]
    for status in ("400", "413", "415", "422", "503"):
        assert responses[status]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"}
    assert responses["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Accepted"}
    assert doc["servers"] == [{"url": "http://127.0.0.1:8080"}]


def test_auth_schemes_follow_each_sources_auth(tmp_path: Path) -> None:
    doc = build(tmp_path, {
        "keyed": {"adapter": "rest", "path": "/in/keyed",
                  "auth": {"type": "api_key", "header": "X-Shop-Key", "keys": ["${KEY}"]}},
        "query": {"adapter": "rest", "path": "/in/query",
                  "auth": {"type": "api_key", "query": "key", "keys": ["${KEY}"]}},
        "basic": {"adapter": "rest", "path": "/in/basic",
                  "auth": {"type": "basic", "users": {"u": "${PASSWORD}"}}},
        "jwt": {"adapter": "rest", "path": "/in/jwt",
                "auth": {"type": "jwt", "algorithms": ["HS256"], "secret": "${JWT}"}},
        "open": {"adapter": "rest", "path": "/in/open"}}, [
        {"name": "all", "to": ["erp"]}])
    schemes = doc["components"]["securitySchemes"]
    assert schemes["keyed-auth"] == {"type": "apiKey", "in": "header", "name": "X-Shop-Key"}
    assert schemes["query-auth"] == {"type": "apiKey", "in": "query", "name": "key"}
    assert schemes["basic-auth"]["scheme"] == "basic"
    assert schemes["jwt-auth"]["scheme"] == "bearer"
    assert schemes["jwt-auth"]["bearerFormat"] == "JWT"
    op = doc["paths"]["/in/jwt"]["post"]
    assert op["security"] == [{"jwt-auth": []}]
    assert "401" in op["responses"]
    assert op["responses"]["401"]["headers"]["WWW-Authenticate"]
    assert "security" not in doc["paths"]["/in/open"]["post"]
    assert "401" not in doc["paths"]["/in/open"]["post"]["responses"]
    text = json.dumps(doc)
    assert not any(secret in text for secret in ENV.values() if len(secret) > 1)


def test_schemas_come_through_named_definitions_and_untyped_routes(tmp_path: Path) -> None:
    inline = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    doc = build(tmp_path, {"crm": {"adapter": "rest", "path": "/in/crm", "type": "contact"},
                           "other": {"adapter": "rest", "path": "/in/other"}},
                [{"name": "contacts", "from": "crm",
                  "transform": ["check-contact"], "to": ["erp"]}],
                transformers={"check-contact": [{"json-schema": {"schema": inline}}]})
    # a route with no type condition: its schema is the base path's and the generic one's
    base = doc["paths"]["/in/crm"]["post"]["requestBody"]["content"]["application/json"]
    assert doc["components"]["schemas"][base["schema"]["$ref"].rsplit("/", 1)[1]] == inline
    generic = doc["paths"]["/in/crm/{type}"]["post"]["requestBody"]["content"]
    assert generic["application/json"]["schema"]["$ref"]
    # the other source is not in the route's `from`: no schema
    assert doc["paths"]["/in/other"]["post"]["requestBody"]["content"]["application/json"][
        "schema"] == {}


def test_sources_of_undescribed_adapters_are_named(tmp_path: Path) -> None:
    doc = build(tmp_path, {"shop": {"adapter": "rest", "path": "/in/shop"},
                           "hook": {"adapter": "webhook", "path": "/hooks/a", "scheme": "github",
                                    "secrets": ["${KEY}"]}},
                [{"name": "all", "to": ["erp"]}])
    assert doc["x-esb-undescribed"] == [{"source": "hook", "adapter": "webhook"}]


CUSTOMER_SCHEMA = {"type": "object", "required": ["id", "name"],
                   "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}


def test_a_request_reply_facade_is_described_with_its_parameters_and_answer(
        tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "customer.json").write_text(json.dumps(CUSTOMER_SCHEMA))
    doc = build(tmp_path,
                {"customers": {"adapter": "rest", "path": "/api/customers/{id}",
                               "methods": ["GET", "DELETE"], "type": "customer.get",
                               "params": {"id": "integer", "verbose": "boolean"}},
                 "fhir": {"adapter": "rest", "path": "/fhir/Patient/{id}", "methods": ["GET"],
                          "type": "patient.read", "errors": "fhir"}},
                [{"name": "lookup", "from": ["customers"], "match": {"type": ["customer.get"]},
                  "to": ["erp"], "reply": {"transform": [
                      {"jmespath": "customer"}, {"json-schema": "schemas/customer.json"}]}},
                 {"name": "patient", "from": ["fhir"], "to": ["erp"], "reply": {}}])
    # a templated path is served as it is: no /{type} below it
    assert {"/api/customers/{id}", "/fhir/Patient/{id}"} == set(doc["paths"])
    get = doc["paths"]["/api/customers/{id}"]["get"]
    assert "requestBody" not in get and "requestBody" not in \
        doc["paths"]["/api/customers/{id}"]["delete"]
    params = {(p["name"], p["in"]): p for p in get["parameters"]}
    assert params[("id", "path")]["schema"] == {"type": "integer"}
    assert params[("id", "path")]["required"] is True
    assert params[("verbose", "query")]["schema"] == {"type": "boolean"}
    answer = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert doc["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]] == CUSTOMER_SCHEMA
    assert {"404", "502", "504"} <= set(get["responses"])
    assert get["responses"]["404"]["content"]["application/problem+json"]
    # a FHIR-facing source: an answer of any shape, failures as OperationOutcomes
    read = doc["paths"]["/fhir/Patient/{id}"]["get"]
    assert read["responses"]["200"]["content"]["application/json"]["schema"] == {}
    outcome = read["responses"]["404"]["content"]["application/fhir+json"]["schema"]
    assert outcome == {"$ref": "#/components/schemas/OperationOutcome"}
    assert doc["components"]["schemas"]["OperationOutcome"]["properties"]["resourceType"] == \
        {"const": "OperationOutcome"}
