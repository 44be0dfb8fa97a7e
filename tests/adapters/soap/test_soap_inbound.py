"""SOAP inbound over a real socket, with zeep as the client (WSDL fetched over HTTP)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from esb.adapters.soap.inbound import SoapInbound
from esb.adapters.soap.settings import SoapInboundSettings
from esb.adapters.spec import HttpRoute
from esb.bus.errors import ConfigError

HERE = Path(__file__).parent
NS = "urn:example:orders"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
S12 = "http://www.w3.org/2003/05/soap-envelope"
Serve = Callable[[list[HttpRoute]], str]


@pytest.fixture
def endpoint(serve_routes: Serve, inbound_ctx: Any) -> Callable[..., str]:
    shutil.copy(HERE / "orders.wsdl", inbound_ctx.config_dir / "orders.wsdl")

    def make(**settings: Any) -> str:
        cfg = SoapInboundSettings.model_validate(
            {"path": "/soap/orders", "wsdl": "orders.wsdl", **settings})
        return serve_routes(SoapInbound(cfg, inbound_ctx).routes) + "/soap/orders"

    return make


def client(url: str, port: str = "OrderPort11") -> Any:
    return zeep.Client(url + "?wsdl").bind("OrderService", port)


def soap11(body: str) -> bytes:
    return (f'<soap:Envelope xmlns:soap="{S11}"><soap:Body>{body}</soap:Body></soap:Envelope>'
            ).encode()


def fault_code(response: httpx.Response) -> str:
    doc = etree.fromstring(response.content)
    return doc.findtext(f"{{{S11}}}Body/{{{S11}}}Fault/faultcode") or doc.findtext(
        f"{{{S12}}}Body/{{{S12}}}Fault/{{{S12}}}Code/{{{S12}}}Value")


def test_wsdl_served_with_rewritten_address(endpoint: Callable[..., str]) -> None:
    url = endpoint()
    response = httpx.get(url + "?wsdl")
    assert response.status_code == 200
    doc = etree.fromstring(response.content)
    locations = [a.get("location") for a in doc.iter("{*}address")]
    assert locations == [url, url]


def test_soap11_call_with_zeep(endpoint: Callable[..., str], inbound_ctx: Any) -> None:
    result = client(endpoint()).SubmitOrder(orderId="A-1", amount=Decimal("12.50"),
                                            currency="EUR")
    env = inbound_ctx.accepted[0]
    assert (result.trackingId, result.status, result.orderId) == (env.id, "ACCEPTED", "A-1")
    assert env.type == "SubmitOrder" and env.source == "test-source"
    assert env.datacontenttype == "application/xml"
    assert env.esbheaders == {"soapaction": "urn:example:orders:SubmitOrder"}
    data = etree.fromstring(env.data.encode())
    assert data.tag == f"{{{NS}}}SubmitOrder"
    assert data.findtext(f"{{{NS}}}amount") == "12.50"


def test_soap12_call_with_zeep(endpoint: Callable[..., str], inbound_ctx: Any) -> None:
    result = client(endpoint(), "OrderPort12").CancelOrder(orderId="A-2")
    assert result.accepted is True and result.result == "QUEUED"
    assert inbound_ctx.accepted[0].type == "CancelOrder"
    assert inbound_ctx.accepted[0].esbheaders["soapaction"] == "urn:example:orders:CancelOrder"


def test_ack_mapping(endpoint: Callable[..., str]) -> None:
    url = endpoint(ack={"note": "$type", "SubmitOrder": {"status": "RECEIVED"}})
    result = client(url).SubmitOrder(orderId="A-3", amount=Decimal(1))
    assert (result.status, result.note) == ("RECEIVED", "SubmitOrder")


@pytest.mark.parametrize(("port", "code"), [("OrderPort11", "soap:Client"),
                                            ("OrderPort12", "soap:Sender")])
def test_schema_violation_is_client_fault(endpoint: Callable[..., str], inbound_ctx: Any,
                                          port: str, code: str) -> None:
    with pytest.raises(zeep.exceptions.Fault) as info:
        client(endpoint(), port).SubmitOrder(orderId="A-4", amount=Decimal(1), currency="eur")
    assert info.value.code == code
    assert "schema violation" in info.value.message
    assert inbound_ctx.accepted == []


@pytest.mark.parametrize(("port", "code"), [("OrderPort11", "soap:Server"),
                                            ("OrderPort12", "soap:Receiver")])
def test_bus_down_is_server_fault(endpoint: Callable[..., str], inbound_ctx: Any,
                                  port: str, code: str) -> None:
    inbound_ctx.down = True
    with pytest.raises(zeep.exceptions.Fault) as info:
        client(endpoint(), port).CancelOrder(orderId="A-5")
    assert info.value.code == code


def test_malformed_xml_is_client_fault(endpoint: Callable[..., str]) -> None:
    response = httpx.post(endpoint(), content=b"<soap:Envelope><oops>",
                          headers={"content-type": "text/xml", "soapaction": '""'})
    assert response.status_code == 500
    assert fault_code(response) == "soap:Client"


def test_doctype_refused_and_entities_not_expanded(endpoint: Callable[..., str],
                                                   inbound_ctx: Any) -> None:
    xxe = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           + soap11(f'<o:CancelOrder xmlns:o="{NS}"><o:orderId>&e;</o:orderId></o:CancelOrder>'))
    response = httpx.post(endpoint(), content=xxe, headers={"content-type": "text/xml"})
    assert fault_code(response) == "soap:Client"
    assert b"root:" not in response.content and inbound_ctx.accepted == []


def test_unknown_operation_and_empty_body(endpoint: Callable[..., str]) -> None:
    url = endpoint()
    response = httpx.post(url, content=soap11(f'<o:Nope xmlns:o="{NS}"/>'),
                          headers={"content-type": "text/xml"})
    assert fault_code(response) == "soap:Client" and b"unknown operation" in response.content
    response = httpx.post(url, content=soap11(""), headers={"content-type": "text/xml"})
    assert fault_code(response) == "soap:Client"


def test_wrong_content_type_oversize_and_version(endpoint: Callable[..., str]) -> None:
    url = endpoint(max_body=512)
    response = httpx.post(url, content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 415 and fault_code(response) == "soap:Client"
    big = soap11(f'<o:CancelOrder xmlns:o="{NS}"><o:orderId>{"x" * 600}</o:orderId>'
                 "</o:CancelOrder>")
    response = httpx.post(url, content=big, headers={"content-type": "text/xml"})
    assert response.status_code == 413 and fault_code(response) == "soap:Client"
    v12 = (f'<e:Envelope xmlns:e="{S12}"><e:Body><o:CancelOrder xmlns:o="{NS}">'
           "<o:orderId>1</o:orderId></o:CancelOrder></e:Body></e:Envelope>").encode()
    response = httpx.post(url, content=v12, headers={"content-type": "text/xml"})
    assert fault_code(response) == "soap:VersionMismatch"


def test_raw_soap12_post_keeps_namespaces(endpoint: Callable[..., str],
                                          inbound_ctx: Any) -> None:
    body = (f'<e:Envelope xmlns:e="{S12}" xmlns:o="{NS}"><e:Body><o:CancelOrder>'
            "<o:orderId>Z</o:orderId></o:CancelOrder></e:Body></e:Envelope>").encode()
    ct = 'application/soap+xml; charset=utf-8; action="urn:custom"'
    response = httpx.post(endpoint(), content=body, headers={"content-type": ct})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/soap+xml")
    env = inbound_ctx.accepted[0]
    assert env.esbheaders["soapaction"] == "urn:custom"
    assert env.data == f'<o:CancelOrder xmlns:o="{NS}"><o:orderId>Z</o:orderId></o:CancelOrder>'


def test_bad_wsdl_is_config_error(tmp_path: Path, inbound_ctx: Any) -> None:
    (tmp_path / "bad.wsdl").write_text("<definitions/>")
    cfg = SoapInboundSettings(path="/x", wsdl=str(tmp_path / "bad.wsdl"))
    with pytest.raises(ConfigError):
        SoapInbound(cfg, inbound_ctx)
