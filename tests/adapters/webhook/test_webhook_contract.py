"""The adapter test kit's contract suites run against the built-in webhook adapter.

Inbound: the provider posts a Standard Webhooks delivery signed with the ``standardwebhooks``
library; a retry reuses its ``webhook-id`` (as providers do) and is signed afresh. Outbound: the
kit's recording HTTP peer (200 / 503 / 400), which sees the envelope's key as ``webhook-id``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from standardwebhooks.webhooks import Webhook

from esb.adapters.testing import HttpInboundContract, HttpOutboundContract, http_client
from esb.adapters.webhook.spec import SPEC
from esb.bus.envelope import Envelope

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PAYLOAD = {"type": "invoice.paid", "data": {"invoice": "INV-1", "amount": 42}}


class TestWebhookInboundContract(HttpInboundContract):
    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {"path": "/hooks/billing", "secrets": [SECRET]}
    expected_type = "invoice.paid"
    http_path = "/hooks/billing"
    http_body = orjson.dumps(PAYLOAD)

    def prepare(self) -> None:
        self.delivery_id = f"msg_{uuid.uuid4().hex}"

    async def offer(self) -> None:
        """Post the delivery, signed now, under this test's one delivery id."""
        assert self.base_url, "the webhook side serves no HTTP routes"
        self.response = None
        now = datetime.now(tz=UTC)
        headers = {"content-type": "application/json", "webhook-id": self.delivery_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(SECRET).sign(self.delivery_id, now,
                                                             self.http_body.decode())}
        async with http_client() as client:
            self.response = await client.post(self.base_url + self.http_path,
                                              content=self.http_body, headers=headers)

    def check_envelope(self, envelope: Envelope) -> None:
        assert (envelope.id, envelope.idempotencykey) == (self.delivery_id, self.delivery_id)
        assert envelope.data == PAYLOAD
        assert self.response is not None
        assert self.response.json() == {"id": self.delivery_id, "duplicate": False}


class TestWebhookOutboundContract(HttpOutboundContract):
    spec = SPEC
    settings: ClassVar[dict[str, Any]] = {"url": "http://127.0.0.1:9/unused",
                                          "secrets": [SECRET]}
    #: Standard Webhooks receivers de-duplicate on ``webhook-id``.
    idempotency_header = "webhook-id"
