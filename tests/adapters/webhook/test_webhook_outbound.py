"""Webhook outbound: signatures verified by the ``standardwebhooks`` library on a real receiver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.spec import OutboundContext
from esb.adapters.webhook.outbound import WebhookOutbound
from esb.adapters.webhook.settings import WebhookOutboundSettings
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="


def receiver(received: list[Any]) -> Starlette:
    """Verifies with standardwebhooks; ``/status/<n>`` answers n after verifying."""

    async def hook(request: Request) -> Response:
        body = await request.body()
        try:
            payload = Webhook(OTHER).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        received.append((payload, dict(request.headers)))
        status = int(request.path_params.get("status", 204))
        return Response(status_code=status, headers={"Retry-After": "7"})

    async def slow(request: Request) -> Response:
        import asyncio

        await asyncio.sleep(0.8)
        return Response(status_code=204)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"]),
                             Route("/status/{status:int}", hook, methods=["POST"]),
                             Route("/slow", slow, methods=["POST"])])


@pytest.fixture
def base(serve_app: Callable[[object], str]) -> tuple[str, list[Any]]:
    received: list[Any] = []
    return serve_app(receiver(received)), received


async def deliver(url: str, env: Envelope, **settings: Any) -> None:
    cfg = WebhookOutboundSettings.model_validate(
        {"url": url, "secrets": [SECRET, OTHER], **settings})
    async with httpx.AsyncClient() as client:
        out = WebhookOutbound(cfg, OutboundContext("dest", Path("."), lambda: client))
        await out.start()
        try:
            await out.send(env)
        finally:
            await out.stop()


async def test_signed_delivery_verifies(base: tuple[str, list[Any]]) -> None:
    url, received = base
    env = Envelope(source="s", type="order.created", data={"orderId": 42})
    await deliver(url + "/hook", env)
    payload, headers = received[0]
    assert payload["type"] == "order.created" and payload["data"] == {"orderId": 42}
    assert headers["webhook-id"] == headers["idempotency-key"] == env.id  # no key: the id
    assert len(headers["webhook-signature"].split(" ")) == 2


async def test_webhook_id_is_the_idempotency_key(base: tuple[str, list[Any]]) -> None:
    """Two envelopes carrying the same key (a sender's retry that became two envelopes) reach
    the receiver with the same webhook-id, which is what it de-duplicates on."""
    url, received = base
    for _ in range(2):
        await deliver(url + "/hook", Envelope(source="s", type="t", data={},
                                              idempotencykey="order-42"))
    assert [h["webhook-id"] for _, h in received] == ["order-42", "order-42"]
    assert [h["idempotency-key"] for _, h in received] == ["order-42", "order-42"]


async def test_raw_data_payload(base: tuple[str, list[Any]]) -> None:
    url, received = base
    await deliver(url + "/hook", Envelope(source="s", type="t", data=[1, 2]), payload="data")
    assert received[0][0] == [1, 2]


@pytest.mark.parametrize(("status", "error"), [
    (500, TransientError), (503, TransientError), (429, TransientError), (408, TransientError),
    (400, PermanentError), (404, PermanentError)])
async def test_status_mapping(base: tuple[str, list[Any]], status: int, error: type) -> None:
    url, _ = base
    with pytest.raises(error) as info:
        await deliver(f"{url}/status/{status}", Envelope(source="s", type="t", data={}))
    assert info.value.status == status
    if error is TransientError:
        assert info.value.retry_after == 7


async def test_timeout_and_refused_are_transient(base: tuple[str, list[Any]]) -> None:
    url, _ = base
    env = Envelope(source="s", type="t", data={})
    with pytest.raises(TransientError, match="timed out"):
        await deliver(url + "/slow", env, timeout=0.2)
    with pytest.raises(TransientError):
        await deliver("http://127.0.0.1:9/hook", env)


def test_allow_list() -> None:
    cfg = WebhookOutboundSettings(url="https://evil.example.net/x", secrets=[SECRET])
    with pytest.raises(ConfigError):
        WebhookOutbound(cfg, OutboundContext("d", Path("."), httpx.AsyncClient,
                                             allowed_hosts=("*.example.com",)))
