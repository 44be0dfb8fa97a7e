"""Webhook inbound over a real socket: signatures, timestamps, replays, bus down."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from esb.adapters.spec import HttpRoute
from esb.adapters.webhook.inbound import WebhookInbound
from esb.adapters.webhook.settings import WebhookInboundSettings
from esb.adapters.webhook.signatures import decode_standard_secret, sign_standard, sign_stripe

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
Serve = Callable[[list[HttpRoute]], str]


def make(serve_routes: Serve, ctx: Any, **settings: Any) -> str:
    cfg = WebhookInboundSettings.model_validate({"path": "/hook", **settings})
    return serve_routes(WebhookInbound(cfg, ctx).routes) + "/hook"


def standard_post(url: str, body: bytes, msg_id: str = "msg_1", ts: int | None = None,
                  secret: str = SECRET) -> httpx.Response:
    ts = int(time.time()) if ts is None else ts
    sig = sign_standard(decode_standard_secret(secret), msg_id, ts, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig,
               "content-type": "application/json"}
    return httpx.post(url, content=body, headers=headers)


def test_standard_accepted(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, secrets=[SECRET])
    response = standard_post(url, b'{"type": "invoice.paid", "data": {"n": 1}}')
    assert response.status_code == 202, response.text
    assert response.json() == {"id": "msg_1", "duplicate": False}
    env = inbound_ctx.accepted[0]
    assert (env.id, env.idempotencykey, env.type) == ("msg_1", "msg_1", "invoice.paid")
    assert env.source == "test-source"
    assert env.data == {"type": "invoice.paid", "data": {"n": 1}}


@pytest.mark.parametrize("offset", [-310, 310])  # clear of the 300 s edge
def test_standard_stale_and_future_rejected(serve_routes: Serve, inbound_ctx: Any,
                                            offset: int) -> None:
    url = make(serve_routes, inbound_ctx, secrets=[SECRET])
    response = standard_post(url, b"{}", ts=int(time.time()) + offset)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert inbound_ctx.accepted == []


def test_tampered_and_wrong_secret_rejected(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, secrets=[SECRET])
    ts = int(time.time())
    sig = sign_standard(decode_standard_secret(SECRET), "m", ts, b'{"a":1}')
    headers = {"webhook-id": "m", "webhook-timestamp": str(ts), "webhook-signature": sig}
    assert httpx.post(url, content=b'{"a":2}', headers=headers).status_code == 401
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
    assert standard_post(url, b"{}", secret=other).status_code == 401
    assert httpx.post(url, content=b"{}").json()["title"] == "Unauthorized"
    assert inbound_ctx.accepted == []


def test_rotated_secret_accepted(serve_routes: Serve, inbound_ctx: Any) -> None:
    new = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
    url = make(serve_routes, inbound_ctx, secrets=[SECRET, new])
    assert standard_post(url, b"{}", msg_id="a", secret=new).status_code == 202
    assert standard_post(url, b"{}", msg_id="b", secret=SECRET).status_code == 202


def test_replayed_id_rejected(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, secrets=[SECRET])
    assert standard_post(url, b"{}", msg_id="dup").status_code == 202
    again = standard_post(url, b"{}", msg_id="dup")
    assert again.status_code == 409
    assert len(inbound_ctx.accepted) == 1


def test_replay_seen_by_another_process_is_rejected_too(serve_routes: Serve,
                                                        inbound_ctx: Any) -> None:
    """Another worker or instance (its own replay memory empty) got the first delivery: the
    shared idempotency check reports the repeat, and the answer is the same 409."""
    first = make(serve_routes, inbound_ctx, secrets=[SECRET])
    other = make(serve_routes, inbound_ctx, secrets=[SECRET])  # a second process's adapter
    assert standard_post(first, b"{}", msg_id="dup-x").status_code == 202
    again = standard_post(other, b"{}", msg_id="dup-x")
    assert again.status_code == 409
    assert again.json()["title"] == "Replayed webhook delivery"


def test_replay_acknowledged_when_configured(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, secrets=[SECRET], on_replay="acknowledge")
    assert standard_post(url, b"{}", msg_id="dup").status_code == 202
    again = standard_post(url, b"{}", msg_id="dup")
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert len(inbound_ctx.accepted) == 1


def test_bus_down_is_503_and_retry_gets_through(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, secrets=[SECRET])
    inbound_ctx.down = True
    response = standard_post(url, b"{}", msg_id="retry-me")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    inbound_ctx.down = False
    assert standard_post(url, b"{}", msg_id="retry-me").status_code == 202


def test_a_bus_fault_is_not_blamed_on_the_sender(serve_routes: Serve, inbound_ctx: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A validation error raised inside the bus (a bug, not the sender's attributes) is a
    500, never a 400 a sender would not retry; the delivery's replay claim is released."""
    url = make(serve_routes, inbound_ctx, secrets=[SECRET])
    accept = inbound_ctx.accept

    async def broken(envelope: Any) -> Any:
        monkeypatch.setattr(inbound_ctx, "accept", accept)  # once
        return WebhookInboundSettings.model_validate({"path": 1})  # raises ValidationError

    monkeypatch.setattr(inbound_ctx, "accept", broken)
    assert standard_post(url, b"{}", msg_id="bus-bug").status_code == 500
    assert standard_post(url, b"{}", msg_id="bus-bug").status_code == 202


def test_oversize_and_malformed(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, secrets=[SECRET], max_body=64)
    assert standard_post(url, b"{" + b" " * 100 + b"}").status_code == 413
    assert standard_post(url, b"{not json", msg_id="x").status_code == 400


def test_github(serve_routes: Serve, inbound_ctx: Any) -> None:
    secret = "It's a Secret to Everybody"
    url = make(serve_routes, inbound_ctx, scheme="github", secrets=[secret])
    body = orjson.dumps({"action": "opened", "issue": {"number": 7}})
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": sig, "X-GitHub-Event": "issues",
               "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
               "content-type": "application/json"}
    assert httpx.post(url, content=body, headers=headers).status_code == 202
    env = inbound_ctx.accepted[0]
    assert env.type == "issues.opened"
    assert env.id == env.idempotencykey == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert httpx.post(url, content=body, headers=headers).status_code == 409
    tampered = body.replace(b"7", b"8")
    assert httpx.post(url, content=tampered, headers=headers).status_code == 401


def test_stripe(serve_routes: Serve, inbound_ctx: Any) -> None:
    secret = "whsec_stripe_test"
    url = make(serve_routes, inbound_ctx, scheme="stripe", secrets=[secret])
    body = orjson.dumps({"id": "evt_123", "type": "payment_intent.succeeded",
                         "data": {"object": {"amount": 2000}}})
    ts = int(time.time())
    header = {"Stripe-Signature": f"t={ts},v1={sign_stripe(secret, ts, body)}"}
    assert httpx.post(url, content=body, headers=header).status_code == 202
    env = inbound_ctx.accepted[0]
    assert (env.id, env.type) == ("evt_123", "payment_intent.succeeded")
    assert httpx.post(url, content=body, headers=header).status_code == 409
    stale = {"Stripe-Signature": f"t={ts - 600},v1={sign_stripe(secret, ts - 600, body)}"}
    assert httpx.post(url, content=body, headers=stale).status_code == 401


def test_generic_hmac_with_header_event_type(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, scheme="hmac", secrets=["k"], header="X-Sig",
               prefix="sha256=", id_header="X-Delivery", event_type="header:X-Event")
    body = b'{"order": 1}'
    sig = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    headers = {"X-Sig": sig, "X-Event": "order.created", "X-Delivery": "d1"}
    assert httpx.post(url, content=body, headers=headers).status_code == 202
    env = inbound_ctx.accepted[0]
    assert (env.type, env.id) == ("order.created", "d1")


def hubspot_headers(secret: str, url: str, body: bytes, ts_ms: int) -> dict[str, str]:
    """Signed as HubSpot's v3 documentation says, written out independently of esb's code."""
    source = "POST" + url + body.decode() + str(ts_ms)
    digest = hmac.new(secret.encode(), source.encode(), hashlib.sha256).digest()
    return {"X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
            "X-HubSpot-Request-Timestamp": str(ts_ms), "content-type": "application/json"}


def test_hubspot_v3(serve_routes: Serve, inbound_ctx: Any) -> None:
    url = make(serve_routes, inbound_ctx, scheme="hubspot", secrets=["hs-client-secret"])
    events = [{"eventId": 101, "subscriptionType": "contact.propertyChange", "objectId": 7,
               "propertyName": "phone", "propertyValue": "+1 555", "changeSource": "CRM_UI"},
              {"eventId": 102, "subscriptionType": "contact.propertyChange", "objectId": 8,
               "propertyName": "phone", "propertyValue": "+1 556", "changeSource": "CRM_UI"}]
    body = orjson.dumps(events)
    now_ms = int(time.time() * 1000)
    answer = httpx.post(url, content=body, headers=hubspot_headers("hs-client-secret", url,
                                                                     body, now_ms))
    assert answer.status_code == 202, answer.text
    env = inbound_ctx.accepted[0]
    assert env.type == "contact.propertyChange" and env.data == events
    assert env.id.startswith("hs-")
    # HubSpot retries a batch with a new timestamp and signature: still the same delivery.
    again = httpx.post(url, content=body, headers=hubspot_headers(
        "hs-client-secret", url, body, now_ms + 1000))
    assert again.status_code == 409
    # Signed for another URL, another secret, or too long ago: refused.
    for headers in (hubspot_headers("hs-client-secret", url + "x", body, now_ms),
                    hubspot_headers("other", url, body, now_ms),
                    hubspot_headers("hs-client-secret", url, body, now_ms - 600_000)):
        assert httpx.post(url, content=body, headers=headers).status_code == 401


def test_hubspot_behind_a_proxy_verifies_the_public_url(serve_routes: Serve,
                                                        inbound_ctx: Any) -> None:
    public = "https://hooks.example.com/crm/hubspot?portal=1%202"
    url = make(serve_routes, inbound_ctx, scheme="hubspot", secrets=["s"], public_url=public)
    body = b'[{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 1}]'
    ts = int(time.time() * 1000)
    # HubSpot signs the decoded URL ("%20" as a space)
    headers = hubspot_headers("s", "https://hooks.example.com/crm/hubspot?portal=1 2", body, ts)
    assert httpx.post(url, content=body, headers=headers).status_code == 202
    assert httpx.post(url, content=body,
                      headers=hubspot_headers("s", url, body, ts)).status_code == 401
