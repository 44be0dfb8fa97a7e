"""Webhook inbound: verify, de-duplicate, hand to the bus, answer."""

from __future__ import annotations

import time

import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.http import validation_detail
from esb.adapters.spec import HttpInbound, HttpRoute, InboundContext
from esb.adapters.webhook.events import (
    default_event_type,
    event_type,
    parse_payload,
)
from esb.adapters.webhook.replay import MemoryReplayStore, ReplayStore
from esb.adapters.webhook.settings import WebhookInboundSettings
from esb.adapters.webhook.signatures import (
    GithubVerifier,
    HmacVerifier,
    HubspotVerifier,
    SignatureError,
    StandardVerifier,
    StripeVerifier,
    TimestampError,
    Verifier,
)
from esb.bus.envelope import Envelope, new_id
from esb.bus.errors import BusUnavailable, IdempotencyInFlight
from esb.bus.httpbody import BodyTooLarge, EncodingRefused, read_body
from esb.bus.payload import PayloadError, lookup, scalar
from esb.bus.problem import json_response, not_taken, problem

log = structlog.get_logger("esb.webhook")


def build_verifier(settings: WebhookInboundSettings) -> Verifier:
    """The verifier for the configured scheme."""
    secrets = [s.get_secret_value() for s in settings.secrets]
    if settings.scheme == "standard":
        return StandardVerifier(secrets, settings.tolerance)
    if settings.scheme == "github":
        return GithubVerifier(secrets)
    if settings.scheme == "stripe":
        return StripeVerifier(secrets, settings.tolerance)
    if settings.scheme == "hubspot":
        return HubspotVerifier(secrets, settings.tolerance, settings.public_url)
    return HmacVerifier(secrets, header=settings.header, algorithm=settings.algorithm,
                        encoding=settings.encoding, prefix=settings.prefix,
                        tolerance=settings.tolerance,
                        timestamp_header=settings.timestamp_header,
                        id_header=settings.id_header)


class WebhookInbound(HttpInbound):
    """Serves one signed-webhook endpoint."""

    def __init__(self, settings: WebhookInboundSettings, ctx: InboundContext,
                 store: ReplayStore | None = None) -> None:
        self.settings = settings
        self.ctx = ctx
        self.store: ReplayStore = store or MemoryReplayStore()
        self.verifier = build_verifier(settings)
        self._type_from = settings.event_type or default_event_type(settings.scheme)
        self.routes = [HttpRoute(settings.path, ("POST",), self.handle)]

    async def handle(self, request: Request) -> Response:
        """Verify the signature, reject replays, and answer once the bus confirmed."""
        s = self.settings
        try:
            body = await read_body(request, s.max_body)
        except BodyTooLarge as exc:
            return problem(413, "Payload too large", str(exc))
        except EncodingRefused as exc:
            return problem(exc.status, exc.title, str(exc))
        try:
            verified = self.verifier.verify(request.headers, body, time.time(),
                                            method=request.method, url=str(request.url))
        except SignatureError as exc:
            # One answer for every reason (missing header, bad signature, stale or future
            # timestamp): a caller learns nothing about which check it failed. The log says.
            log.warning("webhook verification failed", endpoint=self.ctx.name,
                        reason=str(exc), stale=isinstance(exc, TimestampError))
            return problem(401, "Unauthorized", "the webhook could not be verified")
        try:
            payload = parse_payload(body, request.headers.get("content-type", ""),
                                    self.ctx.json_depth)
        except PayloadError as exc:
            return problem(400, "Malformed webhook payload", str(exc))

        delivery = verified.delivery_id
        if delivery is None and self.verifier.payload_id_field:
            delivery = scalar(lookup(payload, self.verifier.payload_id_field)) or None
        key = f"{self.ctx.name}:{delivery}" if delivery else None
        if key and s.replay_window and not await self.store.claim(key, s.replay_window):
            if s.on_replay == "acknowledge":
                return _accepted(delivery or "", duplicate=True)
            return problem(409, "Replayed webhook delivery",
                           f"delivery {delivery!r} was already received")

        async def release() -> None:
            if key:  # not taken, whatever the reason: a resend may claim it again
                await self.store.release(key)

        try:
            envelope = Envelope(
                id=delivery or new_id(),
                source=s.source or self.ctx.name,
                type=event_type(self._type_from, request.headers, payload) or s.default_type,
                datacontenttype="application/json",
                data=payload,
                idempotencykey=delivery,
                traceparent=request.headers.get("traceparent"),
                esbendpoint=self.ctx.name,
            )
        except ValidationError as exc:  # the sender's attributes (not the bus's): a 400
            await release()
            return problem(400, "Invalid webhook attributes", validation_detail(exc))
        except BaseException:
            await release()
            raise
        try:
            accepted = await self.ctx.accept(envelope)
        except IdempotencyInFlight:
            await release()
            return problem(409, "Webhook delivery in flight",
                           f"delivery {delivery!r} is being received by another instance",
                           headers={"Retry-After": "1"})
        except BusUnavailable as exc:
            await release()
            return not_taken(exc, f"the delivery was not accepted ({exc}); retry", 5)
        except BaseException:
            await release()
            raise
        if accepted.mismatch:
            return problem(422, "Webhook delivery id reused",
                           f"delivery {delivery!r} was already received with another payload")
        if accepted.duplicate and key and s.replay_window and s.on_replay != "acknowledge":
            # Seen by another instance (or before a restart): the shared idempotency log knew
            # the delivery id, nothing was published again, and the answer is the same 409.
            return problem(409, "Replayed webhook delivery",
                           f"delivery {delivery!r} was already received")
        return _accepted(accepted.id, duplicate=accepted.duplicate)


def _accepted(envelope_id: str, *, duplicate: bool) -> Response:
    return json_response({"id": envelope_id, "duplicate": duplicate}, 202)
