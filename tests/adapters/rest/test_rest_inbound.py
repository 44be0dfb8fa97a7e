"""rest inbound over a real socket: what each kind of request becomes on the bus.

JSON, XML (UTF-8 and a legacy single-byte encoding, kept byte for byte), text, and the two
CloudEvents HTTP modes; the refusals are in tests/e2e/test_bad_input.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from esb.adapters.rest.inbound import RestInbound
from esb.adapters.rest.settings import RestInboundSettings
from esb.adapters.spec import HttpRoute

Serve = Callable[[list[HttpRoute]], str]


@pytest.fixture
def url(serve_routes: Serve, inbound_ctx: Any) -> str:
    settings = RestInboundSettings(path="/in/shop", keep_headers=["x-request-id"])
    return serve_routes(RestInbound(settings, inbound_ctx, 1 << 20).routes) + "/in/shop"


def test_json_with_type_from_path_and_transport_headers(url: str, inbound_ctx: Any) -> None:
    r = httpx.post(url + "/order.created", content=b'{"n": 1, "total": 9.5}',
                   headers={"content-type": "application/json", "idempotency-key": "k-1",
                            "x-correlation-id": "corr-1", "x-request-id": "req-9",
                            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-"
                                           "b7ad6b7169203331-01"})
    assert r.status_code == 202, r.text
    env = inbound_ctx.accepted[0]
    assert r.json() == {"id": env.id, "status": "accepted"}
    assert (env.type, env.source, env.data) == ("order.created", "test-source",
                                                {"n": 1, "total": 9.5})
    assert (env.idempotencykey, env.correlationid) == ("k-1", "corr-1")
    assert env.traceparent.startswith("00-0af7651916cd43dd")
    assert env.esbheaders == {"x-request-id": "req-9"}


def test_repeated_idempotency_key_is_marked_replayed(url: str, inbound_ctx: Any) -> None:
    for _ in range(2):
        r = httpx.post(url, json={"n": 1}, headers={"idempotency-key": "same"})
    assert r.status_code == 202 and r.headers["idempotent-replayed"] == "true"


def test_utf8_xml_is_kept_as_text_unchanged(url: str, inbound_ctx: Any) -> None:
    body = '<?xml version="1.0"?>\n<o:order xmlns:o="urn:o" id="7"><o:city>Köln</o:city></o:order>'
    r = httpx.post(url, content=body.encode(), headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    env = inbound_ctx.accepted[0]
    assert env.data == body and env.datacontenttype == "application/xml"
    assert env.data_bytes() == body.encode()


@pytest.mark.parametrize("encoding", ["ISO-8859-1", "UTF-16"])
def test_xml_in_a_legacy_encoding_is_kept_byte_for_byte(url: str, inbound_ctx: Any,
                                                        encoding: str) -> None:
    """No charset parameter: the XML declaration names the encoding, and the bytes survive."""
    body = f'<?xml version="1.0" encoding="{encoding}"?><order city="Köln">café</order>'
    raw = body.encode(encoding.lower().replace("-", "_") if encoding == "UTF-16" else "latin-1")
    r = httpx.post(url, content=raw, headers={"content-type": "text/xml"})
    assert r.status_code == 202, r.text
    env = inbound_ctx.accepted[0]
    assert env.data_bytes() == raw
    # the JSON form carries it as base64 and reads it back identically
    assert type(env).from_cloudevent(orjson.loads(env.to_json())).data_bytes() == raw


def test_text_with_charset(url: str, inbound_ctx: Any) -> None:
    r = httpx.post(url, content="RECORD 0001  ÄÖÜ".encode(),
                   headers={"content-type": "text/plain; charset=utf-8"})
    assert r.status_code == 202, r.text
    env = inbound_ctx.accepted[0]
    assert env.data == "RECORD 0001  ÄÖÜ"
    assert env.datacontenttype == "text/plain; charset=utf-8"


def test_cloudevents_binary_mode(url: str, inbound_ctx: Any) -> None:
    r = httpx.post(url, content=b'{"sku": "A-1"}', headers={
        "content-type": "application/json", "ce-specversion": "1.0", "ce-id": "evt-42",
        "ce-source": "urn:legacy:pos", "ce-type": "stock.changed", "ce-subject": "A-1",
        "ce-time": "2026-11-24T08:00:00Z", "ce-correlationid": "corr-7",
        "ce-branch": "north"})
    assert r.status_code == 202, r.text
    env = inbound_ctx.accepted[0]
    assert r.json()["id"] == env.id == "evt-42"
    assert (env.source, env.type, env.subject) == ("urn:legacy:pos", "stock.changed", "A-1")
    assert env.time is not None and env.time.year == 2026
    assert env.correlationid == "corr-7"
    assert env.extensions == {"branch": "north"}
    assert env.data == {"sku": "A-1"}


def test_cloudevents_structured_mode(url: str, inbound_ctx: Any) -> None:
    event = {"specversion": "1.0", "id": "evt-43", "source": "urn:legacy:pos",
             "type": "stock.changed", "datacontenttype": "application/xml",
             "data": "<stock sku='A-1'/>", "idempotencykey": "stock-A-1-43"}
    r = httpx.post(url, content=orjson.dumps(event),
                   headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 202, r.text
    env = inbound_ctx.accepted[0]
    assert (env.id, env.source, env.type) == ("evt-43", "urn:legacy:pos", "stock.changed")
    assert env.data == "<stock sku='A-1'/>" and env.datacontenttype == "application/xml"
    assert env.key == "stock-A-1-43"


def test_an_overlong_idempotency_key_is_refused_not_cut(url: str, inbound_ctx: Any) -> None:
    """Cutting keys would make two different keys one (the second message answered as a
    duplicate and never delivered): a key over 200 characters is refused whole."""
    ok = httpx.post(url, json={"n": 1}, headers={"idempotency-key": "k" * 200})
    assert ok.status_code == 202
    r = httpx.post(url, json={"n": 2}, headers={"idempotency-key": "k" * 200 + "x"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "201 characters" in r.json()["detail"]
    assert [e.data for e in inbound_ctx.accepted] == [{"n": 1}]


def test_a_fhir_source_answers_failures_as_operation_outcomes(serve_routes: Serve,
                                                               inbound_ctx: Any) -> None:
    settings = RestInboundSettings(path="/fhir", errors="fhir", type="fhir.transaction",
                                   content_types=["application/fhir+json"])
    url = serve_routes(RestInbound(settings, inbound_ctx, 1 << 20).routes) + "/fhir"
    wrong = httpx.post(url, content=b"<Bundle/>", headers={"Content-Type": "application/xml"})
    assert wrong.status_code == 415
    assert wrong.headers["content-type"] == "application/fhir+json"
    outcome = wrong.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["code"] == "not-supported"
    assert "application/xml" in outcome["issue"][0]["diagnostics"]
    broken = httpx.post(url, content=b'{"resourceType": ',
                        headers={"Content-Type": "application/fhir+json"})
    assert (broken.status_code, broken.json()["issue"][0]["code"]) == (400, "invalid")
    good = httpx.post(url, content=b'{"resourceType": "Bundle", "type": "transaction"}',
                      headers={"Content-Type": "application/fhir+json"})
    assert good.status_code == 202 and good.json()["status"] == "accepted"
    assert inbound_ctx.accepted[0].data == {"resourceType": "Bundle", "type": "transaction"}


@pytest.mark.parametrize("encoding", ["UTF-16", "EBCDIC-US"])
def test_xml_whose_declaration_does_not_fit_its_bytes_is_refused(url: str, inbound_ctx: Any,
                                                                  encoding: str) -> None:
    """UTF-8 bytes that declare another encoding: read as declared (as a destination sent
    these bytes would), they are not XML — refused at the edge, not passed on."""
    body = f'<?xml version="1.0" encoding="{encoding}"?><r>x</r>'.encode()
    r = httpx.post(url, content=body, headers={"content-type": "application/xml"})
    assert r.status_code == 400 and r.json()["title"] == "Malformed XML", r.text
    assert not inbound_ctx.accepted
