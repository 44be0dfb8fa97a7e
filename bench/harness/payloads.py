"""Message bodies of a given size, each with the latency token's placeholder in it."""

from __future__ import annotations

import orjson

from harness.token import PLACEHOLDER

#: Bytes the placeholder grows by once replaced (``bts:<seq>:<19-digit ns>``, ~30 bytes).
_TOKEN_GROWTH = 30 - len(PLACEHOLDER)
XML_NS = "urn:bench:order"
SOAP_NS = "urn:example:orders"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"


def json_order(size: int, *, country: str = "DE", total: int = 1200,
               customer: str = "ACME") -> bytes:
    """A JSON order of about ``size`` bytes (``note`` pads it)."""
    doc = {"ref": PLACEHOLDER.decode(), "customer": customer, "country": country,
           "total": total, "currency": "EUR",
           "lines": [{"sku": f"SKU-{i:04d}", "qty": i % 7 + 1, "price": 9.5 + i}
                     for i in range(4)],
           "note": ""}
    pad = max(0, size - len(orjson.dumps(doc)) - _TOKEN_GROWTH)
    doc["note"] = "x" * pad
    return orjson.dumps(doc)


def xml_order(size: int, *, country: str = "DE", total: int = 1200) -> bytes:
    """A namespaced XML order of about ``size`` bytes (order lines pad it)."""
    head = (f'<o:order xmlns:o="{XML_NS}"><o:ref>{PLACEHOLDER.decode()}</o:ref>'
            f"<o:customer>ACME</o:customer><o:country>{country}</o:country>"
            f"<o:total>{total}</o:total><o:currency>EUR</o:currency><o:lines>")
    tail = "</o:lines></o:order>"
    lines = []
    used = len(head) + len(tail) + _TOKEN_GROWTH
    i = 0
    while True:
        line = (f"<o:line><o:sku>SKU-{i:04d}</o:sku><o:qty>{i % 7 + 1}</o:qty>"
                f"<o:price>{9.5 + i:.2f}</o:price></o:line>")
        if used + len(line) > size and lines:
            break
        lines.append(line)
        used += len(line)
        i += 1
    return (head + "".join(lines) + tail).encode()


def soap_submit_order(size: int) -> bytes:
    """A SOAP 1.1 ``SubmitOrder`` call (tests/adapters/soap/orders.wsdl) of about ``size``
    bytes: the order id carries the token and pads the message."""
    def build(pad: int) -> str:
        return (f'<soap:Envelope xmlns:soap="{S11}"><soap:Body>'
                f'<o:SubmitOrder xmlns:o="{SOAP_NS}">'
                f"<o:orderId>{PLACEHOLDER.decode()}:{'x' * pad}</o:orderId>"
                "<o:amount>1200.50</o:amount><o:currency>EUR</o:currency>"
                "</o:SubmitOrder></soap:Body></soap:Envelope>")

    pad = max(0, size - len(build(0)) - _TOKEN_GROWTH)
    return build(pad).encode()


XSLT_ORDER_TO_SALES = f"""<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:o="{XML_NS}" exclude-result-prefixes="o">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:template match="/o:order">
    <SalesOrder>
      <Reference><xsl:value-of select="o:ref"/></Reference>
      <Buyer country="{{o:country}}"><xsl:value-of select="o:customer"/></Buyer>
      <Amount currency="{{o:currency}}"><xsl:value-of select="o:total"/></Amount>
      <Items count="{{count(o:lines/o:line)}}">
        <xsl:for-each select="o:lines/o:line">
          <Item sku="{{o:sku}}" quantity="{{o:qty}}">
            <UnitPrice><xsl:value-of select="o:price"/></UnitPrice>
            <LineTotal><xsl:value-of select="format-number(o:qty * o:price, '0.00')"/></LineTotal>
          </Item>
        </xsl:for-each>
      </Items>
    </SalesOrder>
  </xsl:template>
</xsl:stylesheet>
"""
