"""Fuzz targets: each takes fuzzer bytes, feeds them to one of esb's readers of untrusted input,
and lets through only the errors that reader documents. Anything else escaping is a crash
(and becomes a test in ``tests/security/test_fuzz_findings.py``).

Run with ``tests/fuzz/run.py`` (atheris, coverage-guided); see docs/security.md, Fuzzing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import orjson
from pydantic import ValidationError

from esb.adapters.graphql.inbound import RequestRefused, prepare, read_request
from esb.adapters.graphql.limits import QueryLimits
from esb.adapters.graphql.schema import load_schema
from esb.adapters.webhook.signatures import (
    GithubVerifier,
    HmacVerifier,
    SignatureError,
    StandardVerifier,
    StripeVerifier,
)
from esb.bus.envelope import Envelope
from esb.bus.payload import loads_json
from esb.bus.routing.routeset import parse_route_files
from esb.bus.xmlsafe import XmlError, XmlLimits, parse_xml

HERE = Path(__file__).parent
SMALL_XML = XmlLimits(max_elements=200, max_attributes=200, max_depth=32, max_text=1000,
                      max_name=100)


def xml_reader(data: bytes) -> None:
    """The hardened XML reader, as bytes and as text, under small limits."""
    for limits in (SMALL_XML, XmlLimits()):
        with contextlib.suppress(XmlError):
            parse_xml(data, max_bytes=64 * 1024, limits=limits)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    with contextlib.suppress(XmlError):
        parse_xml(text, max_bytes=64 * 1024, limits=SMALL_XML)


def cloudevent_reader(data: bytes) -> None:
    """A structured-mode CloudEvent as the rest and amqp inbound sides read it, then its JSON
    form again (what goes on the bus must read back the same)."""
    try:
        event = loads_json(data, 16)
        envelope = Envelope.from_cloudevent(event)
    except (ValueError, ValidationError):  # orjson.JSONDecodeError and JsonTooDeep included
        return
    again = Envelope.from_json(envelope.to_json())
    assert again.to_cloudevent() == envelope.to_cloudevent()


_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_VERIFIERS = [StandardVerifier([_SECRET], 300), GithubVerifier(["s3cret"]),
              StripeVerifier(["s3cret"], 300),
              HmacVerifier(["s3cret"], header="X-Signature", algorithm="sha256",
                           encoding="hex", prefix="sha256=", tolerance=300,
                           timestamp_header="X-Timestamp", id_header="X-Id"),
              HmacVerifier(["s3cret"], header="X-Signature", algorithm="sha1",
                           encoding="base64", prefix="", tolerance=300,
                           timestamp_header=None, id_header=None)]
_HEADER_NAMES = ("webhook-id", "webhook-timestamp", "webhook-signature", "x-hub-signature-256",
                 "stripe-signature", "x-signature", "x-timestamp", "x-id")


def webhook_verifiers(data: bytes) -> None:
    """Every signature scheme on fuzzed headers and body: only SignatureError may escape."""
    text = data.decode("latin-1")
    parts = text.split("\n")
    headers = {name: parts[i] for i, name in enumerate(_HEADER_NAMES) if i < len(parts)}
    body = data[len(data) // 2:]
    for verifier in _VERIFIERS:
        with contextlib.suppress(SignatureError):
            verifier.verify(headers, body, 1_700_000_000.0)


_SCHEMA = load_schema(HERE.parent / "adapters" / "graphql" / "orders.graphql")
_LIMITS = QueryLimits(max_tokens=2000, max_depth=8, max_fields=100, max_aliases=10,
                      max_cost=200)


def graphql_entry(data: bytes) -> None:
    """A GraphQL-over-HTTP body up to execution: JSON, parameters, parse, limits, validation."""
    try:
        params = read_request(data, 16)
        prepare(_SCHEMA, params, _LIMITS)
    except RequestRefused:
        pass
    query = data.decode("utf-8", "replace")  # the query text alone, too
    with contextlib.suppress(RequestRefused):
        prepare(_SCHEMA, {"query": query}, _LIMITS)


def route_loader(data: bytes) -> None:
    """A route file: every problem is collected with its file and line, nothing raised."""
    text = data.decode("utf-8", "replace")
    rs = parse_route_files({"r.yaml": text})
    assert all(isinstance(p, str) and p.startswith("r.yaml") for p in rs.problems), rs.problems


TARGETS: dict[str, Callable[[bytes], None]] = {
    "xml": xml_reader, "cloudevent": cloudevent_reader, "webhook": webhook_verifiers,
    "graphql": graphql_entry, "routes": route_loader}


def seeds(name: str) -> list[bytes]:
    """The seed corpus of target ``name``."""
    folder = HERE / "corpus" / name
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


__all__ = ["TARGETS", "orjson", "seeds"]
