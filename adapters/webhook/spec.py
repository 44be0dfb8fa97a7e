"""The ``webhook`` adapter's spec (entry point ``esb.adapters.webhook.spec:SPEC``)."""

from __future__ import annotations

from esb.adapters.spec import AdapterSpec
from esb.adapters.webhook.inbound import WebhookInbound
from esb.adapters.webhook.outbound import WebhookOutbound
from esb.adapters.webhook.settings import WebhookInboundSettings, WebhookOutboundSettings

SPEC = AdapterSpec(
    name="webhook",
    summary="Signed webhooks: Standard Webhooks, GitHub, Stripe and generic HMAC in; "
            "Standard Webhooks-signed delivery out.",
    inbound_settings=WebhookInboundSettings,
    inbound=WebhookInbound,
    outbound_settings=WebhookOutboundSettings,
    outbound=WebhookOutbound,
    docs="docs/adapters.md#webhook",
    examples={
        "inbound": "scheme: github\npath: /hooks/github\nsecrets: [\"${GITHUB_HOOK_SECRET}\"]\n",
        "outbound": "url: https://partner.example.com/hooks\nsecrets: [\"${PARTNER_WHSEC}\"]\n",
    },
)
