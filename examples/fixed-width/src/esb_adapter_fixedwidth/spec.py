"""The fixedwidth adapter's spec: what its ``esb.adapters`` entry point names."""

from __future__ import annotations

from esb.adapters.spec import AdapterSpec, InboundContext, OutboundContext

from esb_adapter_fixedwidth.inbound import FixedWidthInbound
from esb_adapter_fixedwidth.outbound import FixedWidthOutbound
from esb_adapter_fixedwidth.settings import FixedWidthInboundSettings, FixedWidthOutboundSettings


def _inbound(settings: FixedWidthInboundSettings, ctx: InboundContext) -> FixedWidthInbound:
    return FixedWidthInbound(settings, ctx)


def _outbound(settings: FixedWidthOutboundSettings, ctx: OutboundContext) -> FixedWidthOutbound:
    return FixedWidthOutbound(settings, ctx)


SPEC = AdapterSpec(
    name="fixedwidth",
    summary="Mainframe fixed-width record files: a folder in (a record each), a file out",
    inbound_settings=FixedWidthInboundSettings,
    inbound=_inbound,
    outbound_settings=FixedWidthOutboundSettings,
    outbound=_outbound,
    # One folder, one picker: the runtime runs the inbound loop on one instance of the fleet
    # at a time (a lease on the broker) and moves it when that instance dies.
    inbound_mode="one-instance",
    docs="Layouts are YAML: fields with a 1-based start column, a length and a type "
         "(str, int, decimal with scale, date YYYYMMDD).",
    examples={
        "inbound": "adapter: fixedwidth\ndirectory: inbox/custmast\n"
                   "layout: layouts/custmast.yaml\ntype: customer.updated\npattern: '*.DAT'",
        "outbound": "adapter: fixedwidth\ndirectory: /mnt/mainframe/pickup\n"
                    "layout: layouts/custmast.yaml\nfilename: '{key}.DAT'",
    },
)
