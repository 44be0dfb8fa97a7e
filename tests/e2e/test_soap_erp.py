"""A spyne SOAP service as the legacy ERP behind a real daemon on RabbitMQ.

Shop orders come in over REST. XML orders go through an XSLT step that produces the ERP's
``ReceiveOrder`` body for a raw-mode soap destination; JSON orders go to a typed soap
destination signed with a WS-Security UsernameToken (its password from ``${ENV}``, its WSDL
loaded over HTTP). The ERP answers ``bad...`` orders with a Client fault (dead-lettered after
one attempt) and the first two calls of a ``flaky...`` order with a Server fault (retried,
then delivered).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from esbtest.waiting import wait_until

SOAP_TESTS = Path(__file__).parents[1] / "adapters" / "soap"
if str(SOAP_TESTS) not in sys.path:  # the ERP peer lives with the soap adapter tests
    sys.path.insert(0, str(SOAP_TESTS))

from soap_erp_peer import PASSWORD, USER, ErpPeer  # noqa: E402

XSLT = Path(__file__).parent / "data" / "soap" / "shop-order-to-erp.xsl"
DELIVERY = {"concurrency": 4, "timeout": "5s", "max_attempts": 5,
            "backoff": {"initial": "250ms", "max": "1s"}}
RAW_ORDERS = ("X-1", "X-2", "bad-x", "flaky-x")
TYPED_ORDERS = ("J-1", "J-2", "bad-j", "flaky-j")


@pytest.fixture
def erp_peers() -> Iterator[tuple[ErpPeer, ErpPeer]]:
    """(plain ERP for the raw destination, ERP demanding a UsernameToken for the typed one)"""
    with ErpPeer() as plain, ErpPeer(require_wsse=True) as secured:
        yield plain, secured


def erp_config(bus: dict[str, Any], typed_wsdl_url: str) -> dict[str, Any]:
    return {
        "bus": bus,
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {
            "erp-raw": {"adapter": "soap", "wsdl": "wsdl/erp.wsdl",
                        "operation": "ReceiveOrder", "mode": "raw", "delivery": DELIVERY},
            "erp-typed": {"adapter": "soap", "wsdl": typed_wsdl_url,
                          "allow_network_wsdl": True, "operation": "ReceiveOrder",
                          "wsse": {"username": USER, "password": "${ERP_PASSWORD}",
                                   "digest": True},
                          "delivery": DELIVERY},
        },
    }


ROUTES = {"erp.yaml": {"routes": [
    {"name": "xml-orders-to-erp", "match": {"type": ["order.xml"]},
     "to": [{"destination": "erp-raw",
             "transform": [{"xslt": "xslt/shop-order-to-erp.xsl"}]}]},
    {"name": "json-orders-to-erp", "match": {"type": ["order.json"]}, "to": ["erp-typed"]},
]}}


def shop_order(number: str) -> str:
    return (f'<order xmlns="urn:example:shop" number="{number}">'
            '<line sku="A" price="10.00"/><line sku="B" price="2.50"/></order>')


def post(d: Any, order_id: str, *, xml: str | None = None,
         data: dict[str, Any] | None = None) -> str:
    """Post one order (XML or JSON) to the shop source; the envelope id."""
    headers = {"Idempotency-Key": order_id}
    if xml is not None:
        headers["Content-Type"] = "application/xml"
    r = httpx.post(f"{d.url}/in/shop/order.{'xml' if xml is not None else 'json'}",
                   content=xml, json=data, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def dead_letters(d: Any, expected: int) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = d.admin("GET", "/admin/dlq").json()["items"]
        return items if len(items) >= expected else None

    return list(wait_until(listed, f"{expected} dead letters", timeout=60, interval=0.25))


def trace_steps(d: Any, envelope_id: str) -> list[dict[str, Any]]:
    """The trace of ``envelope_id`` once it shows the delivery."""

    def events() -> list[dict[str, Any]] | None:
        r = d.admin("GET", f"/admin/trace/{envelope_id}")
        found: list[dict[str, Any]] = r.json()["events"] if r.status_code == 200 else []
        return found if any(e["step"] == "delivered" for e in found) else None

    return list(wait_until(events, f"the delivery of {envelope_id} in its trace", timeout=30,
                           interval=0.25))


def test_legacy_erp_over_soap(rabbit: Any, daemon_factory: Any,
                              erp_peers: tuple[ErpPeer, ErpPeer]) -> None:
    plain, secured = erp_peers
    d = daemon_factory(
        erp_config(rabbit.bus("erp-raw", "erp-typed"), secured.url + "?wsdl"), ROUTES,
        env={"ERP_PASSWORD": PASSWORD},
        files={"wsdl/erp.wsdl": httpx.get(plain.url + "?wsdl").content,
               "xslt/shop-order-to-erp.xsl": XSLT.read_text()}).start()
    ids = {n: post(d, n, xml=shop_order(n)) for n in RAW_ORDERS}
    ids |= {n: post(d, n, data={"orderId": n, "amount": "7.25"}) for n in TYPED_ORDERS}

    # good orders, and the flaky ones in the end, reach the ERP: the XML ones as the XSLT
    # made them (the amount is the sum of the order lines), the JSON ones with their token
    wait_until(lambda: {o for o, _ in plain.received} == {"X-1", "X-2", "flaky-x"}
               and {o for o, _ in secured.received} == {"J-1", "J-2", "flaky-j"},
               "the good and flaky orders at the ERP", timeout=60, interval=0.25)
    assert sorted(plain.received) == [("X-1", Decimal("12.50")), ("X-2", Decimal("12.50")),
                                      ("flaky-x", Decimal("12.50"))]
    assert sorted(secured.received) == [("J-1", Decimal("7.25")), ("J-2", Decimal("7.25")),
                                        ("flaky-j", Decimal("7.25"))]

    # Client faults: dead-lettered after exactly one call, with the fault's code and text
    dlq = {item["id"]: item for item in dead_letters(d, 2)}
    assert set(dlq) == {ids["bad-x"], ids["bad-j"]}
    for order_id, destination in (("bad-x", "erp-raw"), ("bad-j", "erp-typed")):
        item = dlq[ids[order_id]]
        assert item["destination"] == destination
        assert item["attempts"] == 1
        assert "Client.UnknownCustomer" in item["error"] and "no such customer" in item["error"]
    assert plain.calls["bad-x"] == 1 and secured.calls["bad-j"] == 1

    # Server faults: retried with backoff, delivered on the third call
    for order_id, destination, peer in (("flaky-x", "erp-raw", plain),
                                        ("flaky-j", "erp-typed", secured)):
        events = trace_steps(d, ids[order_id])
        failed = [e["detail"] for e in events if e["step"] == "attempt"]
        assert [f["attempt"] for f in failed] == [1, 2]
        assert all(f["destination"] == destination and f["outcome"] == "transient"
                   and "Server.Database" in f["error"] for f in failed)
        assert sum(e["step"] == "retry-scheduled" for e in events) == 2
        delivered = [e["detail"] for e in events if e["step"] == "delivered"]
        assert [(x["destination"], x["attempt"]) for x in delivered] == [(destination, 3)]
        assert peer.calls[order_id] == 3

    # the typed destination's WSDL (a URL) was cached in the daemon's state folder
    assert len(list((d.root / ".esb" / "wsdl-cache").glob("*.xml"))) == 1
    assert d.stop() == 0
