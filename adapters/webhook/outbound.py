"""Webhook outbound: Standard Webhooks-signed POST to one URL."""

from __future__ import annotations

import base64
import time

import httpx
import orjson

from esb.adapters.auth.outbound import build_outbound_auth, scrubbed
from esb.adapters.http import (
    PooledClient,
    check_host,
    header_safe,
    raise_for_status,
    transport_error,
)
from esb.adapters.spec import OutboundContext
from esb.adapters.webhook.settings import WebhookOutboundSettings
from esb.adapters.webhook.signatures import decode_standard_secret, sign_standard
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError


class WebhookOutbound(PooledClient):
    """Signs each delivery with every configured secret and POSTs it."""

    def __init__(self, settings: WebhookOutboundSettings, ctx: OutboundContext) -> None:
        check_host(settings.url, ctx.allowed_hosts)
        self.settings = settings
        self.ctx = ctx
        self._keys = [decode_standard_secret(s.get_secret_value()) for s in settings.secrets]
        self.auth = build_outbound_auth(settings.auth, ctx.http, ctx.allowed_hosts)

    def body(self, envelope: Envelope) -> tuple[bytes, str]:
        """The request body and its content type."""
        if self.settings.payload == "data":
            return envelope.data_bytes(), envelope.datacontenttype or "application/json"
        data = envelope.data
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii")
        doc = {"type": envelope.type, "timestamp": envelope.time, "data": data}
        try:
            return orjson.dumps(doc), "application/json"
        except TypeError as exc:
            raise PermanentError(f"envelope data is not JSON-serializable: {exc}") from exc

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers."""
        signatures = " ".join(sign_standard(k, msg_id, timestamp, body) for k in self._keys)
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": signatures}

    async def send(self, envelope: Envelope) -> int:
        body, content_type = self.body(envelope)
        # webhook-id is what receivers de-duplicate on (Standard Webhooks): the envelope's key
        # (its idempotency key, else its id), plus an explicit Idempotency-Key for those that
        # look for that header.
        key = header_safe(envelope.key)
        headers = {**self.settings.headers, "content-type": content_type,
                   "idempotency-key": key, **self.sign(key, int(time.time()), body)}
        client = self.client()
        with scrubbed(self.auth, url=self.settings.url):
            try:
                response = await client.post(self.settings.url, content=body, headers=headers,
                                             timeout=self.settings.timeout, auth=self.auth)
            except httpx.HTTPError as exc:
                raise transport_error(exc, f"webhook {self.ctx.name}") from exc
            raise_for_status(response, f"webhook {self.ctx.name}")
        return response.status_code
