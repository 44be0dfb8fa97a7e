"""A SOAP 1.1 order → canonical JSON → a partner's XML, through a two-step chain."""

from __future__ import annotations

from pathlib import Path

import orjson
from lxml import etree

from esb.bus.envelope import Envelope
from esb.transformers.chain import build_chain

DATA = Path(__file__).parent / "data"

# As it would be written in a route file (YAML), already loaded.
NAMED = {
    "to-canonical-order": [
        {"xml-to-json": {"strip_namespaces": True, "force_list": ["Line"],
                         "types": {"Qty": "integer", "Price": "number"}}},
        {"jmespath": 'Envelope.Body.PlaceOrder.Order.{orderId: "@id", currency: "@currency", '
                     'customer: {code: Customer."@code", name: Customer."#text"}, date: Date, '
                     'lines: Line[].{sku: "@sku", quantity: Qty, unitPrice: Price}}'},
        {"json-schema": "schemas/canonical-order.schema.json"},
    ],
    "to-partner": [
        {"json-to-xml": {"root": "canonicalOrder"}},
        {"xslt": {"stylesheet": "xslt/canonical-to-partner.xsl",
                  "params": {"partner": "WIDGETCO"}}},
    ],
}


def c14n(text: str | bytes) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True)
    raw = text.encode() if isinstance(text, str) else text
    return etree.tostring(etree.fromstring(raw, parser), method="c14n")


def soap_order() -> Envelope:
    return Envelope(source="urn:acme:erp", type="order.placed", correlationid="corr-77",
                    datacontenttype="application/xml",
                    data=(DATA / "soap_order.xml").read_text(encoding="utf-8"))


def test_soap_order_to_canonical_json() -> None:
    chain = build_chain(["to-canonical-order"], base_dir=DATA, named=NAMED)
    out = chain(soap_order())
    assert out.datacontenttype == "application/json"
    assert out.data == orjson.loads((DATA / "canonical_order.json").read_bytes())


def test_two_step_chain_to_partner_xml() -> None:
    chain = build_chain(["to-canonical-order", "to-partner"], base_dir=DATA, named=NAMED)
    assert chain.steps == [
        "to-canonical-order/xml-to-json", "to-canonical-order/jmespath",
        "to-canonical-order/json-schema", "to-partner/json-to-xml", "to-partner/xslt",
    ]
    env = soap_order()
    out = chain(env)
    assert out.datacontenttype == "application/xml"
    assert c14n(out.data) == c14n((DATA / "partner_order.xml").read_bytes())
    # Everything but the payload travels unchanged.
    assert (out.id, out.correlationid, out.type) == (env.id, "corr-77", "order.placed")
