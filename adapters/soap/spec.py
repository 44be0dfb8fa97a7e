"""The ``soap`` adapter's spec (entry point ``esb.adapters.soap.spec:SPEC``)."""

from __future__ import annotations

from esb.adapters.soap.inbound import SoapInbound
from esb.adapters.soap.outbound import SoapOutbound
from esb.adapters.soap.settings import SoapInboundSettings, SoapOutboundSettings
from esb.adapters.spec import AdapterSpec

SPEC = AdapterSpec(
    name="soap",
    summary="SOAP 1.1/1.2: a WSDL-described endpoint in (validated, acknowledged); zeep out "
            "(typed or raw body, HTTP auth and WS-Security UsernameToken).",
    inbound_settings=SoapInboundSettings,
    inbound=SoapInbound,
    outbound_settings=SoapOutboundSettings,
    outbound=SoapOutbound,
    docs="docs/adapters.md#soap",
    examples={
        "inbound": "path: /soap/orders\nwsdl: orders.wsdl\nack: {status: ACCEPTED}\n",
        "outbound": "wsdl: erp.wsdl\noperation: ReceiveOrder\nmode: raw\n",
    },
)
