"""The scenarios: what the daemon is configured with, what the load generator sends, and the
target each one's throughput is held to.

Every esb scenario runs one daemon with one source (``in``) and one REST destination (``sink``,
the harness's sink); only the routes, transforms and payloads differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import payloads

KIB = 1024
WSDL = Path(__file__).resolve().parents[2] / "tests" / "adapters" / "soap" / "orders.wsdl"
COUNTRIES = ["DE", "FR", "IT", "ES", "NL", "PL", "SE", "AT"]


@dataclass(frozen=True)
class Target:
    """``rate >= factor * rate(reference)``."""

    reference: str
    factor: float | None  # None: the ratio is reported, no target applies

    def label(self) -> str:
        if self.factor is None:
            return f"vs {self.reference}"
        return f">= {self.factor:g} x {self.reference}"


@dataclass
class Scenario:
    name: str
    size: int
    body: bytes
    path: str = "/in/order.created"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    #: "esb" (a daemon), "ceiling" (bench/ceiling.py) or "proxy" (bench/direct_proxy.py)
    kind: str = "esb"
    #: the ceiling's way out: "httpx" (esb's own client stack) or "raw" (the lean relay)
    client: str = "httpx"
    source: dict[str, Any] = field(default_factory=lambda: {"adapter": "rest", "path": "/in"})
    routes: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes | str] = field(default_factory=dict)
    target: Target | None = None
    description: str = ""
    #: The daemon's ``sink`` destination instead of a REST POST to the sink (``{sink}`` in a
    #: value is the sink's URL).
    destination: dict[str, Any] | None = None
    #: Arguments of bench/direct_proxy.py (``{sink}`` as above), for kind "proxy".
    proxy_args: list[str] = field(default_factory=list)
    #: Request/reply: p50/p99 are the callers' round trips (send → answer), not send → sink.
    round_trip: bool = False


def _route(name: str, match: dict[str, Any], to: Any = None) -> dict[str, Any]:
    return {"name": name, "from": ["in"], "match": match, "to": to or ["sink"]}


def _size_tag(size: int) -> str:
    return f"{size // KIB}k"


def ceiling(size: int) -> Scenario:
    return Scenario(f"ceiling-{_size_tag(size)}", size, payloads.json_order(size), path="/in",
                    kind="ceiling",
                    description="raw relay: uvicorn → pika confirmed publish → consume → httpx")


def lean_relay(size: int) -> Scenario:
    return Scenario(f"relay-{_size_tag(size)}", size, payloads.json_order(size), path="/in",
                    kind="ceiling", client="raw",
                    description="lean relay: the ceiling with a bare HTTP/1.1 client out")


def passthrough(size: int) -> Scenario:
    tag = _size_tag(size)
    return Scenario(f"passthrough-{tag}", size, payloads.json_order(size),
                    routes={"routes.yaml": {"routes": [_route("all", {})]}},
                    target=Target(f"relay-{tag}", 0.8),
                    description="match {} → one REST destination")


def cbr_attribute(size: int) -> Scenario:
    tag = _size_tag(size)
    routes = [_route("created", {"type": ["order.created"]}),
              _route("cancelled", {"type": ["order.cancelled"]}),
              _route("other", {"type": [{"prefix": "invoice."}]})]
    return Scenario(f"cbr-attr-{tag}", size, payloads.json_order(size),
                    routes={"routes.yaml": {"routes": routes}},
                    target=Target(f"passthrough-{tag}", 0.95),
                    description="type attribute; 3 routes, 1 fires")


def cbr_json(size: int) -> Scenario:
    tag = _size_tag(size)
    routes = [
        _route("eu-big", {"type": ["order.created"],
                          "data": {"country": ["DE", "FR", "NL"],
                                   "total": [{"numeric": [">=", 1000]}]}}),
        _route("eu-small", {"type": ["order.created"],
                            "data": {"country": ["DE", "FR", "NL"],
                                     "total": [{"numeric": ["<", 1000]}]}}),
        _route("non-eu", {"type": ["order.created"],
                          "data": {"country": [{"anything-but": ["DE", "FR", "NL"]}]}}),
    ]
    return Scenario(f"cbr-json-{tag}", size, payloads.json_order(size),
                    routes={"routes.yaml": {"routes": routes}},
                    target=Target(f"passthrough-{tag}", 0.8 if size == KIB else None),
                    description="data.country + numeric data.total; 3 routes, 1 fires")


def cbr_xml(size: int) -> Scenario:
    tag = _size_tag(size)
    routes = [
        _route("eu-big", {"type": ["order.created"],
                          "data": {"$xpath": {"/o:order/o:country": ["DE", "FR", "NL"],
                                              "/o:order/o:total": [{"numeric": [">=", 1000]}]}}}),
        _route("eu-small", {"type": ["order.created"],
                            "data": {"$xpath": {"/o:order/o:country": ["DE", "FR", "NL"],
                                                "/o:order/o:total": [{"numeric": ["<", 1000]}]}}}),
    ]
    return Scenario(f"cbr-xml-{tag}", size, payloads.xml_order(size),
                    headers={"Content-Type": "application/xml"},
                    routes={"routes.yaml": {"namespaces": {"o": payloads.XML_NS},
                                            "routes": routes}},
                    target=Target(f"passthrough-{tag}", 0.8 if size == KIB else None),
                    description="$xpath on country + numeric total; 2 routes, 1 fires")


def xslt(size: int, *, inline: bool = False) -> Scenario:
    """XSLT 1.0 on the XML order; ``inline``: the step run in the daemon (``isolation:
    inline``), to show beside it what the sandbox process costs."""
    tag = _size_tag(size)
    step: dict[str, object] = {"stylesheet": "xslt/order-to-sales.xsl"}
    if inline:
        step["isolation"] = "inline"
    to = [{"destination": "sink", "transform": [{"xslt": step}]}]
    return Scenario(f"xslt-inline-{tag}" if inline else f"xslt-{tag}", size,
                    payloads.xml_order(size),
                    headers={"Content-Type": "application/xml"},
                    routes={"routes.yaml": {"routes": [
                        _route("to-sales", {"type": ["order.created"]}, to)]}},
                    files={"xslt/order-to-sales.xsl": payloads.XSLT_ORDER_TO_SALES},
                    # 0.6 at both sizes: §11 sets it at 1 KiB, performance round two at 10 KiB
                    target=Target(f"passthrough-{tag}", None if inline else 0.6),
                    description="xslt-* run in the daemon (isolation: inline), no sandbox"
                    if inline else "XSLT 1.0 order → sales order on the XML payload")


def xml_to_json(size: int) -> Scenario:
    tag = _size_tag(size)
    to = [{"destination": "sink", "transform": [{"xml-to-json": {"strip_namespaces": True}}]}]
    return Scenario(f"xml2json-{tag}", size, payloads.xml_order(size),
                    headers={"Content-Type": "application/xml"},
                    routes={"routes.yaml": {"routes": [
                        _route("to-json", {"type": ["order.created"]}, to)]}},
                    target=Target(f"passthrough-{tag}", 0.6 if size == KIB else None),
                    description="xml-to-json of the XML payload")


def soap(size: int) -> Scenario:
    tag = _size_tag(size)
    return Scenario(f"soap-{tag}", size, payloads.soap_submit_order(size), path="/soap/orders",
                    headers={"Content-Type": "text/xml; charset=utf-8",
                             "SOAPAction": '"urn:example:orders:SubmitOrder"'},
                    source={"adapter": "soap", "path": "/soap/orders",
                            "wsdl": "wsdl/orders.wsdl"},
                    routes={"routes.yaml": {"routes": [
                        _route("orders", {"type": ["SubmitOrder"]})]}},
                    files={"wsdl/orders.wsdl": WSDL.read_bytes()},
                    target=Target(f"passthrough-{tag}", None),
                    description="SOAP 1.1 in (WSDL-validated) → REST out")


def rule_count(n: int) -> Scenario:
    """N routes differing in type and data values; each message matches exactly one.

    Route i: ``type: [order.t<i mod 10>]``, ``data.customer: [C<i>]``, ``data.total >= i mod
    1000``; the message is route n/2's, so the type alone leaves n/10 candidates.
    """
    routes = [_route(f"r{i}", {"type": [f"order.t{i % 10}"],
                               "data": {"customer": [f"C{i}"],
                                        "total": [{"numeric": [">=", i % 1000]}]}})
              for i in range(n)]
    k = n // 2
    return Scenario(f"routes-{n}", KIB, payloads.json_order(KIB, customer=f"C{k}"),
                    path=f"/in/order.t{k % 10}",
                    routes={"routes.yaml": {"routes": routes}},
                    target=None if n == 10 else Target("routes-10", 0.9 if n == 10000 else None),
                    description=f"{n} routes, 1 fires")


#: Request/reply through the bus: REST in → SOAP backend, XSLT both ways.
XSLT_ORDER_TO_SUBMIT = f"""<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:o="{payloads.XML_NS}" exclude-result-prefixes="o">
  <xsl:template match="/o:order">
    <s:SubmitOrder xmlns:s="{payloads.SOAP_NS}">
      <s:orderId><xsl:value-of select="o:ref"/></s:orderId>
      <s:amount><xsl:value-of select="o:total"/></s:amount>
      <s:currency><xsl:value-of select="o:currency"/></s:currency>
      <s:lines><xsl:value-of select="count(o:lines/o:line)"/></s:lines>
    </s:SubmitOrder>
  </xsl:template>
</xsl:stylesheet>
"""
XSLT_SUBMIT_TO_CONFIRMATION = f"""<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:s="{payloads.SOAP_NS}" exclude-result-prefixes="s">
  <xsl:template match="/s:SubmitOrder">
    <confirmation order="{{s:orderId}}" amount="{{s:amount}}" currency="{{s:currency}}"/>
  </xsl:template>
</xsl:stylesheet>
"""
_RR_DELIVERY = {"concurrency": 64, "timeout": "10s", "max_reply": "1MiB"}


def rr_direct_rest(size: int) -> Scenario:
    return Scenario(f"rr-direct-rest-{_size_tag(size)}", size, payloads.json_order(size),
                    path="/in", kind="proxy", round_trip=True,
                    proxy_args=["--mode", "rest", "--target", "{sink}/echo"],
                    description="direct proxy: uvicorn in → httpx POST → its answer back")


def rr_relay_rest(size: int) -> Scenario:
    tag = _size_tag(size)
    return Scenario(f"rr-relay-rest-{tag}", size, payloads.json_order(size),
                    path="/in", kind="proxy", round_trip=True,
                    proxy_args=["--mode", "rest", "--target", "{sink}/echo",
                                "--bus", "{bus}", "--queue", "{queue}"],
                    target=Target(f"rr-direct-rest-{tag}", None),
                    description="lean request/reply relay: the direct proxy with a RabbitMQ "
                                "hop there and back (bench/bus_hop.py)")


def rr_rest(size: int) -> Scenario:
    tag = _size_tag(size)
    return Scenario(f"rr-rest-{tag}", size, payloads.json_order(size), round_trip=True,
                    routes={"routes.yaml": {"routes": [
                        {**_route("call", {}), "reply": {"timeout": "30s"}}]}},
                    destination={"adapter": "rest", "url": "{sink}/echo",
                                 "delivery": _RR_DELIVERY},
                    target=Target(f"rr-direct-rest-{tag}", 0.5 if size == KIB else None),
                    description="request/reply: REST in → bus → REST backend → reply")


def rr_direct_soap(size: int) -> Scenario:
    return Scenario(f"rr-direct-soap-{_size_tag(size)}", size, payloads.xml_order(size),
                    path="/in", kind="proxy", round_trip=True,
                    headers={"Content-Type": "application/xml"},
                    files={"in.xsl": XSLT_ORDER_TO_SUBMIT,
                           "out.xsl": XSLT_SUBMIT_TO_CONFIRMATION},
                    proxy_args=["--mode", "soap", "--target", "{sink}/echo",
                                "--xslt-in", "in.xsl", "--xslt-out", "out.xsl"],
                    description="direct proxy: XSLT → SOAP POST → XSLT on its answer")


def rr_relay_soap(size: int) -> Scenario:
    tag = _size_tag(size)
    direct = rr_direct_soap(size)
    return Scenario(f"rr-relay-soap-{tag}", size, direct.body, path="/in", kind="proxy",
                    round_trip=True, headers=direct.headers, files=direct.files,
                    proxy_args=[*direct.proxy_args, "--bus", "{bus}", "--queue", "{queue}"],
                    target=Target(f"rr-direct-soap-{tag}", None),
                    description="lean request/reply relay: the SOAP direct proxy with a "
                                "RabbitMQ hop there and back")


def rr_soap(size: int) -> Scenario:
    tag = _size_tag(size)
    to = [{"destination": "sink", "transform": [{"xslt": "xslt/in.xsl"}]}]
    return Scenario(f"rr-soap-{tag}", size, payloads.xml_order(size), round_trip=True,
                    headers={"Content-Type": "application/xml"},
                    routes={"routes.yaml": {"routes": [
                        {**_route("call", {}, to),
                         "reply": {"timeout": "30s",
                                   "transform": [{"xslt": "xslt/out.xsl"}]}}]}},
                    files={"xslt/in.xsl": XSLT_ORDER_TO_SUBMIT,
                           "xslt/out.xsl": XSLT_SUBMIT_TO_CONFIRMATION,
                           "wsdl/orders.wsdl": WSDL.read_bytes()},
                    destination={"adapter": "soap", "wsdl": "wsdl/orders.wsdl",
                                 "operation": "SubmitOrder", "mode": "raw",
                                 "address": "{sink}/echo", "delivery": _RR_DELIVERY},
                    target=Target(f"rr-direct-soap-{tag}", 0.5 if size == KIB else None),
                    description="request/reply: REST XML in → XSLT → SOAP backend → XSLT")


def request_reply() -> list[Scenario]:
    return [rr_direct_rest(KIB), rr_relay_rest(KIB), rr_rest(KIB), rr_direct_soap(KIB),
            rr_relay_soap(KIB), rr_soap(KIB)]


def full() -> list[Scenario]:
    out: list[Scenario] = []
    for size in (KIB, 10 * KIB):
        out += [ceiling(size), lean_relay(size), passthrough(size), cbr_attribute(size),
                cbr_json(size),
                cbr_xml(size), xslt(size), xslt(size, inline=True), xml_to_json(size), soap(size)]
    out += [rule_count(10), rule_count(1000), rule_count(10000)]
    out += request_reply()
    return out


def quick() -> list[Scenario]:
    """The CI smoke set: 1 KiB only; the XSLT step is in it so its ratio to pass-through is
    reported on every run."""
    return [ceiling(KIB), lean_relay(KIB), passthrough(KIB), cbr_attribute(KIB), xslt(KIB)]


def by_name() -> dict[str, Scenario]:
    return {s.name: s for s in full()}
