"""The adapter test kit's contract suites run against the built-in soap adapter.

Inbound: a SOAP 1.1 call of ``SubmitOrder`` (orders.wsdl) posted over a real socket; the peer
counts as acknowledged once it got a 2xx answer (a Server fault, 500, tells it to call again).
Outbound: the spyne ERP (soap_erp_peer) takes ``ReceiveOrder`` calls; ``boom...`` orders get a
Server fault (transient), ``bad...`` orders a Client fault (permanent).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
from lxml import etree
from soap_erp_peer import ErpPeer

from esb.adapters.soap.spec import SPEC
from esb.adapters.testing import (
    Delivered,
    FailureKind,
    HttpInboundContract,
    OutboundPeer,
    RequestContract,
)
from esb.bus.envelope import Envelope

HERE = Path(__file__).parent
ORDERS = "urn:example:orders"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"


class TestSoapInboundContract(HttpInboundContract):
    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {"path": "/soap/orders", "wsdl": "orders.wsdl"}
    expected_type = "SubmitOrder"
    http_path = "/soap/orders"
    http_headers: ClassVar[dict[str, str]] = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '"urn:example:orders:SubmitOrder"'}
    http_body = (f'<s:Envelope xmlns:s="{S11}"><s:Body>'
                 f'<o:SubmitOrder xmlns:o="{ORDERS}"><o:orderId>A-1</o:orderId>'
                 "<o:amount>12.50</o:amount><o:currency>EUR</o:currency></o:SubmitOrder>"
                 "</s:Body></s:Envelope>").encode()

    def prepare(self) -> None:
        shutil.copy(HERE / "orders.wsdl", self.tmp_path / "orders.wsdl")

    def check_envelope(self, envelope: Envelope) -> None:
        assert envelope.datacontenttype == "application/xml"
        assert envelope.esbheaders == {"soapaction": "urn:example:orders:SubmitOrder"}
        call = etree.fromstring(str(envelope.data).encode())
        assert call.findtext(f"{{{ORDERS}}}orderId") == "A-1"
        assert call.findtext(f"{{{ORDERS}}}amount") == "12.50"
        # The acknowledgement the caller got names the envelope it became.
        assert self.response is not None
        ack = etree.fromstring(self.response.content)
        tracking = ack.findtext(f"{{{S11}}}Body/{{{ORDERS}}}SubmitOrderResponse/"
                                f"{{{ORDERS}}}trackingId")
        assert tracking == envelope.id


class TestSoapOutboundContract(RequestContract):
    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {"wsdl": "erp.wsdl", "operation": "ReceiveOrder"}

    def sample_envelope(self) -> Envelope:
        return Envelope(source="esb-test-kit", type="kit.sample",
                        datacontenttype="application/json",
                        data={"orderId": "A-1", "amount": "12.50"})

    @contextlib.asynccontextmanager
    async def _erp(self, order_id: str) -> AsyncIterator[OutboundPeer]:
        """The ERP, its WSDL written to the config folder, and an order for ``order_id``."""
        peer = ErpPeer().__enter__()
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                wsdl = (await client.get(peer.url + "?wsdl")).content
            (self.tmp_path / "erp.wsdl").write_bytes(wsdl)
            envelope = self.sample_envelope().model_copy(
                update={"data": {"orderId": order_id, "amount": "12.50"}})
            yield OutboundPeer(
                # SOAP has no field for it: the key travels as the Idempotency-Key header
                delivered=lambda: [Delivered(key, order)
                                   for key, order in zip(peer.keys, peer.received,
                                                         strict=True)],
                envelope=envelope)
        finally:
            await asyncio.to_thread(peer.__exit__)

    def accepting_peer(self) -> contextlib.AbstractAsyncContextManager[OutboundPeer]:
        return self._erp("A-1")

    def failing_peer(self, kind: FailureKind
                     ) -> contextlib.AbstractAsyncContextManager[OutboundPeer]:
        return self._erp("boom-1" if kind == "transient" else "bad-1")
