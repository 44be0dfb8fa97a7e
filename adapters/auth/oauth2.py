"""OAuth 2.0 client credentials (RFC 6749 §4.4) as an :class:`httpx.Auth`.

* The access token is cached until ``refresh_before`` seconds (at most half the lifetime)
  before ``expires_in`` runs out; without ``expires_in`` it is kept until the destination
  answers 401.
* Concurrent sends share one in-flight token request.
* A 401 from the destination drops the token it was sent with, fetches a new one and retries
  the request once; a second 401 is the destination's answer (a PermanentError upstream).
* Token endpoint failures: timeouts, connection errors, 408/425/429 and 5xx are
  :class:`~esb.bus.errors.TransientError`; ``invalid_client`` and other 4xx (and a 2xx without
  an ``access_token``) are :class:`~esb.bus.errors.PermanentError`. Messages name the endpoint
  (credentials in its URL removed) and the OAuth ``error`` code, never a secret or a token.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import httpx

from esb.adapters.auth.settings import OAuth2Outbound
from esb.adapters.http import is_transient_status, retry_after
from esb.bus.errors import DeliveryError, PermanentError, TransientError


def _retrieve(task: asyncio.Task[str]) -> None:
    """Mark the outcome as seen (every waiter may have been cancelled)."""
    if not task.cancelled():
        task.exception()


_SECRET_PARAM = re.compile(r"(key|token|secret|password|passwd|pwd|sig|signature|auth|code)",
                           re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` for messages: without ``user:password@``, and with the values of query
    parameters whose names suggest a credential (``api_key``, ``token``, ``sig`` ...) as
    ``***``."""
    try:
        parts = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(invalid URL)"
    clean = parts.copy_with(userinfo=b"", fragment=None)
    items = parts.params.multi_items()
    if any(_SECRET_PARAM.search(k) for k, _ in items):
        clean = clean.copy_with(params=[(k, "***" if _SECRET_PARAM.search(k) else v)
                                        for k, v in items])
    return str(clean).replace("%2A%2A%2A", "***")


class OAuth2ClientCredentials(httpx.Auth):
    """Client credentials with a shared token cache. ``http`` returns the client used for the
    token endpoint (the daemon's pool) in the async flow; the sync flow uses ``httpx.Client``.
    """

    def __init__(self, settings: OAuth2Outbound,
                 http: Callable[[], httpx.AsyncClient] | None = None) -> None:
        self.settings = settings
        self._http = http
        self._token: str | None = None
        self._expires_at = 0.0
        self._inflight: asyncio.Task[str] | None = None
        self._sync_lock = threading.Lock()
        self._where = f"OAuth2 token endpoint {redact_url(settings.token_url)}"

    # -- the httpx.Auth flows -----------------------------------------------------------------

    async def async_auth_flow(self, request: httpx.Request
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.invalidate(token)
            token = await self.token()
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def sync_auth_flow(self, request: httpx.Request
                       ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token_sync()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.invalidate(token)
            token = self.token_sync()
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    # -- the cache ----------------------------------------------------------------------------

    @property
    def current(self) -> str | None:
        """The cached token while it is still fresh."""
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        return None

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the destination refused it); a newer token is kept."""
        if self._token == token:
            self._token = None

    async def token(self) -> str:
        """A fresh token: the cached one, or the one the in-flight request brings."""
        if (token := self.current) is not None:
            return token
        task = self._inflight
        if task is None or task.done():
            task = asyncio.ensure_future(self._fetch_async())
            task.add_done_callback(_retrieve)
            self._inflight = task
        # shield: a cancelled send must not cancel the fetch other sends wait for.
        return await asyncio.shield(task)

    def token_sync(self) -> str:
        with self._sync_lock:
            if (token := self.current) is not None:
                return token
            try:
                with httpx.Client(timeout=self.settings.timeout) as client:
                    response = client.post(self.settings.token_url, **self._request())
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            return self._store(response)

    async def _fetch_async(self) -> str:
        try:
            if self._http is not None:
                response = await self._http().post(self.settings.token_url,
                                                   timeout=self.settings.timeout,
                                                   **self._request())
            else:
                async with httpx.AsyncClient(timeout=self.settings.timeout) as client:
                    response = await client.post(self.settings.token_url, **self._request())
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        return self._store(response)

    # -- the token request --------------------------------------------------------------------

    def _request(self) -> dict[str, Any]:
        s = self.settings
        form = {"grant_type": "client_credentials"}
        if s.scope:
            form["scope"] = s.scope
        if s.audience:
            form["audience"] = s.audience
        kwargs: dict[str, Any] = {"headers": {"Accept": "application/json"}}
        secret = s.client_secret.get_secret_value()
        if s.client_auth == "post":
            form.update(client_id=s.client_id, client_secret=secret)
        else:
            kwargs["auth"] = httpx.BasicAuth(s.client_id, secret)
        kwargs["data"] = form
        return kwargs

    def _transport_error(self, exc: httpx.HTTPError) -> TransientError:
        # httpx's messages carry no credentials, but keep only the exception's kind anyway.
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return TransientError(f"{self._where} {kind}: {type(exc).__name__}")

    def _store(self, response: httpx.Response) -> str:
        status = response.status_code
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = None
        if not 200 <= status < 300:
            raise self._status_error(response, payload)
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentError(f"{self._where} answered HTTP {status} without an "
                                 "access_token", status=status)
        lifetime = payload.get("expires_in") if isinstance(payload, dict) else None
        now = time.monotonic()
        if isinstance(lifetime, (int, float, str)) and str(lifetime).replace(".", "", 1).isdigit():
            seconds = float(lifetime)
            self._expires_at = now + seconds - min(self.settings.refresh_before, seconds / 2)
        else:
            self._expires_at = float("inf")  # kept until the destination answers 401
        self._token = token
        return token

    def _status_error(self, response: httpx.Response, payload: Any) -> DeliveryError:
        status = response.status_code
        code = payload.get("error") if isinstance(payload, dict) else None
        message = f"{self._where} answered HTTP {status}"
        if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) <= 64:
            message += f" ({code})"
        if is_transient_status(status):
            return TransientError(message, status=status, retry_after=retry_after(response))
        return PermanentError(message, status=status)
