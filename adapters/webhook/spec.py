"""The ``webhook`` adapter's spec (entry point ``esb.adapters.webhook.spec:SPEC``)."""

from __future__ import annotations

from esb.adapters.spec import AdapterSpec, InboundContext, OutboundContext
from esb.adapters.webhook.inbound import WebhookInbound
from esb.adapters.webhook.outbound import WebhookOutbound
from esb.adapters.webhook.settings import WebhookInboundSettings, WebhookOutboundSettings


def inbound(settings: WebhookInboundSettings, ctx: InboundContext) -> WebhookInbound:
    return WebhookInbound(settings, ctx)


def outbound(settings: WebhookOutboundSettings, ctx: OutboundContext) -> WebhookOutbound:
    return WebhookOutbound(settings, ctx)


SPEC = AdapterSpec(
    name="webhook",
    summary="Signed webhooks: Standard Webhooks, GitHub, Stripe and generic HMAC in; "
            "Standard Webhooks-signed delivery out.",
    inbound_settings=WebhookInboundSettings,
    inbound=inbound,
    outbound_settings=WebhookOutboundSettings,
    outbound=outbound,
    docs="docs/adapters.md#webhook",
    examples={
        "inbound": "scheme: github\npath: /hooks/github\nsecrets: [\"${GITHUB_HOOK_SECRET}\"]\n",
        "outbound": "url: https://partner.example.com/hooks\nsecrets: [\"${PARTNER_WHSEC}\"]\n",
    },
)
