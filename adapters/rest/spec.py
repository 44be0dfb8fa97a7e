"""The rest adapter, registered like any plugin (entry point ``esb.adapters: rest``)."""

from __future__ import annotations

from esb.adapters.rest.inbound import RestInbound
from esb.adapters.rest.openapi import describe
from esb.adapters.rest.outbound import RestOutbound
from esb.adapters.rest.settings import RestInboundSettings, RestOutboundSettings
from esb.adapters.spec import AdapterSpec

SPEC = AdapterSpec(
    name="rest",
    summary="HTTP endpoints in (JSON, XML, text, CloudEvents); HTTP calls out (httpx)",
    inbound_settings=RestInboundSettings,
    inbound=RestInbound,
    outbound_settings=RestOutboundSettings,
    outbound=RestOutbound,
    openapi=describe,
    # HTTP endpoints are served everywhere; start() only begins the poller: once per fleet.
    inbound_mode="one-instance",
)
