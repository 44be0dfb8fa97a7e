"""Outbound auth on the rest, graphql and webhook destinations, against real HTTP servers: an
OAuth 2.0 token endpoint that counts its requests and a protected API that can revoke tokens."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import structlog
from esbtest.waiting import until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.auth.oauth2 import OAuth2ClientCredentials
from esb.adapters.auth.settings import OAuth2Outbound
from esb.adapters.graphql.outbound import GraphqlOutbound
from esb.adapters.graphql.settings import GraphqlOutboundSettings
from esb.adapters.rest.outbound import RestOutbound
from esb.adapters.rest.settings import RestOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.adapters.testing.context import RecordingInboundContext
from esb.adapters.webhook.outbound import WebhookOutbound
from esb.adapters.webhook.settings import WebhookOutboundSettings
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError
from esb.bus.runtime.logs import SecretRedactor

CLIENT_ID = "esb-client"
CLIENT_SECRET = "cl1ent-s3cret-value-42"


@dataclass
class Idp:
    """Token endpoint + protected API in one app."""

    token_requests: list[dict[str, Any]] = field(default_factory=list)
    api_requests: list[dict[str, str]] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    expires_in: int | None = 3600
    token_status: int = 200
    token_error: str | None = None
    token_delay: float = 0.0
    api_status: int = 200
    reject_all: bool = False
    echo_auth: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            auth = request.headers.get("authorization", "")
            if auth.startswith("Basic "):
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            else:
                cid, secret = form.get("client_id", ""), form.get("client_secret", "")
            with self.lock:
                self.token_requests.append({**form, "via": "basic" if auth else "post"})
                n = len(self.token_requests)
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            if self.token_status != 200:
                return JSONResponse({"error": self.token_error or "server_error",
                                     "error_description": f"bad client {secret}"},
                                    status_code=self.token_status)
            if (cid, secret) != (CLIENT_ID, CLIENT_SECRET):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            tok = f"tok-{n}-abcdef"
            self.valid.add(tok)
            body: dict[str, Any] = {"access_token": tok, "token_type": "Bearer"}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            return JSONResponse(body)

        async def api(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            await request.body()
            with self.lock:
                self.api_requests.append({"authorization": auth,
                                          "x-api-key": request.headers.get("x-api-key", "")})
            tok = auth.removeprefix("Bearer ")
            if self.reject_all or (auth.startswith("Bearer ") and tok not in self.valid):
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            if self.api_status != 200:
                text = f"rejected request with {auth}" if self.echo_auth else "rejected"
                return Response(text, status_code=self.api_status)
            if request.url.path.endswith("graphql"):
                return JSONResponse({"data": {"ok": True}})
            return Response(status_code=204)

        return Starlette(routes=[Route("/token", token, methods=["POST"]),
                                 Route("/api/{rest:path}", api, methods=["POST", "PUT"])])


@pytest.fixture
def idp(serve_app: Callable[[object], str]) -> tuple[Idp, str]:
    server = Idp()
    return server, serve_app(server.app())


def oauth(base: str, **extra: Any) -> dict[str, Any]:
    return {"type": "oauth2", "token_url": base + "/token", "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, **extra}


def rest_out(base: str, client: httpx.AsyncClient, tmp_path: Path, auth: dict[str, Any],
             path: str = "/api/orders", **extra: Any) -> RestOutbound:
    cfg = RestOutboundSettings.model_validate({"url": base + path, "auth": auth, **extra})
    return RestOutbound(cfg, OutboundContext("out", tmp_path, lambda: client))


def env(n: int = 1) -> Envelope:
    return Envelope(source="shop", type="order.created", data={"n": n})


async def test_token_is_fetched_once_for_concurrent_sends(idp: tuple[Idp, str],
                                                          tmp_path: Path) -> None:
    server, base = idp
    server.token_delay = 0.2  # every send arrives while the first fetch is in flight
    async with httpx.AsyncClient() as client:
        side = rest_out(base, client, tmp_path, oauth(base, scope="orders:write",
                                                      audience="https://api"))
        await side.start()
        await asyncio.gather(*(side.send(env(i)) for i in range(20)))
        await side.send(env(99))
    assert len(server.token_requests) == 1
    req = server.token_requests[0]
    assert req == {"grant_type": "client_credentials", "scope": "orders:write",
                   "audience": "https://api", "via": "basic"}
    assert {r["authorization"] for r in server.api_requests} == {"Bearer tok-1-abcdef"}
    assert len(server.api_requests) == 21


async def test_token_is_renewed_before_it_expires(idp: tuple[Idp, str],
                                                  tmp_path: Path) -> None:
    server, base = idp
    # renewed after min(refresh_before, lifetime / 2) = 1 s: time enough for the first two
    # sends to reuse it on a loaded machine (at 0.5 s a slow second send renewed it early)
    server.expires_in = 2
    async with httpx.AsyncClient() as client:
        side = rest_out(base, client, tmp_path, oauth(base, client_auth="post"))
        await side.send(env())
        await side.send(env())
        assert len(server.token_requests) == 1
        await asyncio.sleep(1.1)
        await side.send(env())
    assert len(server.token_requests) == 2
    assert server.token_requests[0]["via"] == "post"
    assert server.token_requests[0]["client_id"] == CLIENT_ID


async def test_a_401_refreshes_once_and_retries_once(idp: tuple[Idp, str],
                                                     tmp_path: Path) -> None:
    server, base = idp
    async with httpx.AsyncClient() as client:
        side = rest_out(base, client, tmp_path, oauth(base))
        await side.send(env())
        server.valid.clear()  # the API revoked every token
        await asyncio.gather(*(side.send(env(i)) for i in range(5)))
        assert len(server.token_requests) == 2  # one refresh for all five
        # An API that refuses every token: one refresh, one retry, then a permanent error.
        server.reject_all = True
        before_tokens, before_api = len(server.token_requests), len(server.api_requests)
        with pytest.raises(PermanentError) as info:
            await side.send(env())
    assert info.value.status == 401
    assert len(server.token_requests) == before_tokens + 1
    assert len(server.api_requests) == before_api + 2


@pytest.mark.parametrize(("status", "error", "expected"), [
    (500, None, TransientError), (503, None, TransientError), (429, None, TransientError),
    (400, "invalid_client", PermanentError), (401, "invalid_client", PermanentError),
    (400, "invalid_scope", PermanentError)])
async def test_token_endpoint_failures(idp: tuple[Idp, str], tmp_path: Path, status: int,
                                       error: str | None, expected: type[Exception]) -> None:
    server, base = idp
    server.token_status, server.token_error = status, error
    async with httpx.AsyncClient() as client:
        side = rest_out(base, client, tmp_path, oauth(base))
        with pytest.raises(expected) as info:
            await side.send(env())
    message = str(info.value)
    assert "token endpoint" in message and str(status) in message
    if error:
        assert error in message
    assert CLIENT_SECRET not in message  # the endpoint echoed it in error_description
    assert not server.api_requests


async def test_token_endpoint_timeout_and_refused_connection(idp: tuple[Idp, str],
                                                             tmp_path: Path) -> None:
    server, base = idp
    server.token_delay = 1.0
    async with httpx.AsyncClient() as client:
        side = rest_out(base, client, tmp_path, oauth(base, timeout="200ms"))
        with pytest.raises(TransientError, match="timed out"):
            await side.send(env())
        gone = rest_out(base, client, tmp_path,
                        {**oauth(base), "token_url": "http://127.0.0.1:9/token"})
        with pytest.raises(TransientError, match="failed"):
            await gone.send(env())


async def test_missing_expires_in_is_kept_until_a_401(idp: tuple[Idp, str],
                                                      tmp_path: Path) -> None:
    server, base = idp
    server.expires_in = None
    async with httpx.AsyncClient() as client:
        side = rest_out(base, client, tmp_path, oauth(base))
        for _ in range(3):
            await side.send(env())
        assert len(server.token_requests) == 1
        server.valid.clear()
        await side.send(env())
    assert len(server.token_requests) == 2


def test_sync_flow_with_a_plain_httpx_client(idp: tuple[Idp, str]) -> None:
    server, base = idp
    auth = OAuth2ClientCredentials(OAuth2Outbound.model_validate(oauth(base)))
    with httpx.Client() as client:
        for _ in range(2):
            assert client.post(base + "/api/x", json={}, auth=auth).status_code == 204
        server.valid.clear()
        assert client.post(base + "/api/x", json={}, auth=auth).status_code == 204
    assert len(server.token_requests) == 2


async def test_static_credentials_on_rest_graphql_and_webhook(idp: tuple[Idp, str],
                                                              tmp_path: Path) -> None:
    server, base = idp
    server.valid.add("static-bearer-123")
    (tmp_path / "op.graphql").write_text("mutation { ok }")
    async with httpx.AsyncClient() as client:
        ctx = OutboundContext("out", tmp_path, lambda: client)
        await rest_out(base, client, tmp_path, {"type": "api_key", "header": "X-API-Key",
                                                "value": "static-key-123"}).send(env())
        await rest_out(base, client, tmp_path, {"type": "basic", "username": "u",
                                                "password": "basic-pw-123"}).send(env())
        gql = GraphqlOutbound(GraphqlOutboundSettings.model_validate(
            {"url": base + "/api/graphql", "document": "op.graphql",
             "auth": {"type": "bearer", "token": "static-bearer-123"}}), ctx)
        await gql.send(env())
        hook = WebhookOutbound(WebhookOutboundSettings.model_validate(
            {"url": base + "/api/hook", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
             "auth": oauth(base)}), ctx)
        await hook.send(env())
    seen = server.api_requests
    assert seen[0]["x-api-key"] == "static-key-123"
    assert seen[1]["authorization"] == "Basic " + base64.b64encode(b"u:basic-pw-123").decode()
    assert seen[2]["authorization"] == "Bearer static-bearer-123"
    assert seen[3]["authorization"] == "Bearer tok-1-abcdef"


async def test_graphql_outbound_oauth2_refresh(idp: tuple[Idp, str], tmp_path: Path) -> None:
    server, base = idp
    (tmp_path / "op.graphql").write_text("mutation { ok }")
    async with httpx.AsyncClient() as client:
        gql = GraphqlOutbound(GraphqlOutboundSettings.model_validate(
            {"url": base + "/api/graphql", "document": "op.graphql", "auth": oauth(base)}),
            OutboundContext("out", tmp_path, lambda: client))
        await gql.send(env())
        server.valid.clear()
        await gql.send(env())
    assert len(server.token_requests) == 2 and len(server.api_requests) == 3


def test_token_url_is_subject_to_the_allow_list(tmp_path: Path) -> None:
    cfg = RestOutboundSettings.model_validate(
        {"url": "https://api.example.com/x",
         "auth": oauth("https://idp.elsewhere.net")})
    with pytest.raises(ConfigError, match=r"auth\.token_url"):
        RestOutbound(cfg, OutboundContext("out", tmp_path, httpx.AsyncClient,
                                          allowed_hosts=("api.example.com",)))


# -- secrets stay secret ----------------------------------------------------------------------


async def test_echoed_credentials_and_url_passwords_never_reach_errors(
        idp: tuple[Idp, str], tmp_path: Path) -> None:
    server, base = idp
    server.api_status, server.echo_auth = 400, True
    async with httpx.AsyncClient() as client:
        server.valid.add("bearer-tok-987")
        side = rest_out(base, client, tmp_path, {"type": "bearer", "token": "bearer-tok-987"})
        with pytest.raises(PermanentError) as info:
            await side.send(env())
        assert "bearer-tok-987" not in str(info.value) and "***" in str(info.value)
        side = rest_out(base, client, tmp_path, oauth(base))
        with pytest.raises(PermanentError) as info:
            await side.send(env())
        assert "tok-1-abcdef" not in str(info.value)
        with_pw = base.replace("http://", "http://user:url-pass-654@")
        side = rest_out(with_pw, client, tmp_path, {"type": "basic", "username": "u",
                                                    "password": "basic-pw-321"},
                        path="/api/x?api_key=query-key-555&n=1")
        with pytest.raises(PermanentError) as info:
            await side.send(env())
        for secret in ("url-pass-654", "basic-pw-321", "query-key-555",
                       base64.b64encode(b"u:basic-pw-321").decode()):
            assert secret not in str(info.value)
        assert "n=1" in str(info.value)


def test_outbound_settings_hide_secrets() -> None:
    cfg = RestOutboundSettings.model_validate(
        {"url": "http://x/", "auth": oauth("http://idp")})
    for text in (repr(cfg), str(cfg.model_dump()), cfg.model_dump_json()):
        assert CLIENT_SECRET not in text


async def test_no_secret_is_logged_and_the_redactor_catches_the_rest(
        idp: tuple[Idp, str], tmp_path: Path) -> None:
    """Failing token fetches, polls and sends, logged through structlog: our own events carry
    no credential (captured without any redaction), and the daemon's SecretRedactor scrubs a
    secret that a log call would include."""
    from esb.adapters.amqp.outbound import AmqpOutbound
    from esb.adapters.amqp.settings import AmqpOutboundSettings
    from esb.adapters.rest.polling import Poller
    from esb.adapters.rest.settings import PollSettings

    server, base = idp
    server.token_status, server.token_error = 400, "invalid_client"
    secrets = [CLIENT_SECRET, "amqp-pass-777"]
    with structlog.testing.capture_logs() as raw:
        poller = Poller(PollSettings.model_validate(
            {"url": base + "/api/items", "interval": "50ms", "auth": oauth(base)}),
            RecordingInboundContext(name="polled", config_dir=tmp_path))
        await poller.start()
        # Wait for the failed poll's warning itself, not a fixed time: a loaded machine
        # may take longer than a few poll intervals to fetch, fail and log.
        assert await until(lambda: "invalid_client" in repr(raw)), raw
        await poller.stop()
        amqp = AmqpOutbound(AmqpOutboundSettings.model_validate(
            {"url": "amqp://esb:amqp-pass-777@127.0.0.1:9/", "routing_key": "x"}),
            OutboundContext("legacy", tmp_path, httpx.AsyncClient))
        await amqp.start()
        await amqp.stop()
    assert raw, "expected warnings from the failing poll and broker"
    text = repr(raw)
    assert "invalid_client" in text
    for secret in secrets:
        assert secret not in text
    # The daemon's chain: SecretRedactor before the renderer (here: a capture).
    captured = structlog.testing.LogCapture()
    log = structlog.wrap_logger(structlog.PrintLogger(), processors=[
        SecretRedactor(secrets), captured])
    log.warning(f"oops {CLIENT_SECRET}", error="amqp://esb:amqp-pass-777@h", n=1)
    assert CLIENT_SECRET not in repr(captured.entries)
    assert "amqp-pass-777" not in repr(captured.entries)
    assert captured.entries[0]["error"] == "amqp://esb:***@h"
