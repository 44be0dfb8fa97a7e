"""SOAP inbound over a real socket, with zeep as the client (WSDL fetched over HTTP)."""

from __future__ import annotations

import re
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
from zeep.wsse.username import UsernameToken

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
    ct = 'application/soap+xml; charset=utf-8; action="urn:example:orders:CancelOrder"'
    response = httpx.post(endpoint(), content=body, headers={"content-type": ct})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/soap+xml")
    env = inbound_ctx.accepted[0]
    assert env.esbheaders["soapaction"] == "urn:example:orders:CancelOrder"
    assert env.data == f'<o:CancelOrder xmlns:o="{NS}"><o:orderId>Z</o:orderId></o:CancelOrder>'


def test_bad_wsdl_is_config_error(tmp_path: Path, inbound_ctx: Any) -> None:
    (tmp_path / "bad.wsdl").write_text("<definitions/>")
    cfg = SoapInboundSettings(path="/x", wsdl=str(tmp_path / "bad.wsdl"))
    with pytest.raises(ConfigError):
        SoapInbound(cfg, inbound_ctx)


# -- schema files referred to by the WSDL -----------------------------------------------------

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XS = "http://www.w3.org/2001/XMLSchema"


def split_wsdl(folder: Path, location: str = "xsd/orders.xsd",
               types_namespace: str | None = NS) -> str:
    """orders.wsdl written as ``split.wsdl`` importing its schema from ``location``, which
    includes the simple types from ``types.xsd`` beside it (target namespace
    ``types_namespace``)."""
    doc = etree.parse(str(HERE / "orders.wsdl")).getroot()
    types = doc.find(f"{{{WSDL_NS}}}types")
    assert types is not None
    schema = types[0]
    types.remove(schema)
    # tns is used in attribute values only: declared on the root, or lost on serialization
    nsmap = {"xs": XS, "tns": NS}
    main = etree.Element(schema.tag, attrib=dict(schema.attrib), nsmap=nsmap)
    main.extend(list(schema))
    simple = etree.Element(f"{{{XS}}}schema", nsmap=nsmap)
    if types_namespace is not None:
        simple.set("targetNamespace", types_namespace)
    for node in main.findall(f"{{{XS}}}simpleType"):
        simple.append(node)
    main.insert(0, etree.Element(f"{{{XS}}}include", schemaLocation="types.xsd"))
    wrapper = etree.SubElement(types, f"{{{XS}}}schema")
    etree.SubElement(wrapper, f"{{{XS}}}import", namespace=NS, schemaLocation=location)
    (folder / "xsd").mkdir(exist_ok=True)
    (folder / "xsd" / "orders.xsd").write_bytes(etree.tostring(main))
    (folder / "xsd" / "types.xsd").write_bytes(etree.tostring(simple))
    (folder / "split.wsdl").write_bytes(etree.tostring(doc))
    return "split.wsdl"


def schema_locations(content: bytes) -> list[str | None]:
    doc = etree.fromstring(content)
    return [n.get("schemaLocation") for n in doc.iter(f"{{{XS}}}import", f"{{{XS}}}include")]


def test_schema_files_are_served_and_followed_by_zeep(endpoint: Callable[..., str],
                                                      inbound_ctx: Any) -> None:
    url = endpoint(wsdl=split_wsdl(inbound_ctx.config_dir))
    assert schema_locations(httpx.get(url + "?wsdl").content) == [f"{url}?xsd=orders.xsd"]
    assert schema_locations(httpx.get(url + "?xsd=orders.xsd").content) == [
        f"{url}?xsd=types.xsd"]
    assert httpx.get(url + "?xsd=types.xsd").status_code == 200
    assert httpx.get(url + "?xsd=passwd").status_code == 404

    result = client(url).SubmitOrder(orderId="X-1", amount=Decimal("2.50"), currency="EUR")
    env = inbound_ctx.accepted[0]
    assert (result.trackingId, result.status, result.orderId) == (env.id, "ACCEPTED", "X-1")
    # the enumeration of the included types.xsd fills the acknowledgement
    result = client(url, "OrderPort12").CancelOrder(orderId="X-2")
    assert result.accepted is True and result.result == "QUEUED"
    # and its pattern validates the calls
    with pytest.raises(zeep.exceptions.Fault, match="schema violation"):
        client(url).SubmitOrder(orderId="X-3", amount=Decimal(1), currency="eur")
    assert [e.type for e in inbound_ctx.accepted] == ["SubmitOrder", "CancelOrder"]


@pytest.mark.parametrize(("split", "refused"), [
    ({"location": "http://schemas.example.com/orders.xsd"},
     "serve a self-contained WSDL: inline the schema of http://schemas.example.com/orders.xsd"),
    ({"location": "xsd/missing.xsd"}, "missing.xsd, which cannot be read"),
    ({"types_namespace": None}, "types.xsd is included by"),
])
def test_schema_files_that_cannot_be_served_are_refused(
        inbound_ctx: Any, split: dict[str, Any], refused: str) -> None:
    wsdl = split_wsdl(inbound_ctx.config_dir, **split)
    with pytest.raises(ConfigError, match=re.escape(refused)):
        SoapInbound(SoapInboundSettings(path="/x", wsdl=wsdl), inbound_ctx)


def test_redefine_is_refused(inbound_ctx: Any) -> None:
    wsdl = split_wsdl(inbound_ctx.config_dir)
    path = inbound_ctx.config_dir / "xsd" / "orders.xsd"
    path.write_bytes(path.read_bytes().replace(b"<xs:include", b"<xs:redefine"))
    with pytest.raises(ConfigError, match="xs:redefine is not supported"):
        SoapInbound(SoapInboundSettings(path="/x", wsdl=wsdl), inbound_ctx)


# -- mustUnderstand ---------------------------------------------------------------------------

HDR = "urn:example:header"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
CANCEL = f'<o:CancelOrder xmlns:o="{NS}"><o:orderId>M-1</o:orderId></o:CancelOrder>'


def with_header(version: str, header: str) -> tuple[bytes, dict[str, str]]:
    """A CancelOrder call carrying ``header`` (``{e}`` is the envelope prefix)."""
    ns, media = (S11, "text/xml") if version == "1.1" else (S12, "application/soap+xml")
    body = (f'<e:Envelope xmlns:e="{ns}"><e:Header>{header.format(e="e")}</e:Header>'
            f"<e:Body>{CANCEL}</e:Body></e:Envelope>")
    return body.encode(), {"content-type": media}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("block", [
    f'<h:Auth xmlns:h="{HDR}" {{e}}:mustUnderstand="1">x</h:Auth>',
    f'<h:Auth xmlns:h="{HDR}" {{e}}:mustUnderstand="true"/>',
    f'<w:Security xmlns:w="{WSSE}" {{e}}:mustUnderstand="1"><w:UsernameToken/></w:Security>',
])
def test_mandatory_headers_get_a_must_understand_fault(
        endpoint: Callable[..., str], inbound_ctx: Any, version: str, block: str) -> None:
    content, headers = with_header(version, block)
    response = httpx.post(endpoint(), content=content, headers=headers)
    assert response.status_code == 500
    assert fault_code(response) == "soap:MustUnderstand"
    assert inbound_ctx.accepted == []
    tag = etree.fromstring(content).find("{*}Header")[0].tag
    doc = etree.fromstring(response.content)
    if version == "1.2":  # the blocks not understood are named in env:NotUnderstood
        named = doc.find(f"{{{S12}}}Header/{{{S12}}}NotUnderstood")
        assert named is not None
        prefix, _, local = named.get("qname").partition(":")
        assert f"{{{named.nsmap[prefix]}}}{local}" == tag
    else:
        assert tag in doc.findtext(f"{{{S11}}}Body/{{{S11}}}Fault/faultstring")


@pytest.mark.parametrize(("version", "block"), [
    ("1.1", f'<h:Auth xmlns:h="{HDR}" {{e}}:mustUnderstand="0"/>'),
    ("1.1", f'<h:Auth xmlns:h="{HDR}" {{e}}:mustUnderstand="1" '
            '{e}:actor="urn:example:some-intermediary"/>'),
    ("1.2", f'<h:Auth xmlns:h="{HDR}" {{e}}:mustUnderstand="false"/>'),
    ("1.2", f'<h:Auth xmlns:h="{HDR}" {{e}}:mustUnderstand="true" '
            f'{{e}}:role="{S12}/role/none"/>'),
])
def test_optional_headers_and_headers_for_others_are_ignored(
        endpoint: Callable[..., str], inbound_ctx: Any, version: str, block: str) -> None:
    content, headers = with_header(version, block)
    response = httpx.post(endpoint(), content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert [e.type for e in inbound_ctx.accepted] == ["CancelOrder"]


def test_ws_security_without_must_understand_is_ignored(endpoint: Callable[..., str],
                                                        inbound_ctx: Any) -> None:
    url = endpoint()
    service = zeep.Client(url + "?wsdl", wsse=UsernameToken("esb", "s3cret")).bind(
        "OrderService", "OrderPort11")
    assert service.CancelOrder(orderId="M-2").result == "QUEUED"
    assert [e.type for e in inbound_ctx.accepted] == ["CancelOrder"]
