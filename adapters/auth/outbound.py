"""Outbound authentication for HTTP destinations, as :class:`httpx.Auth` objects passed per
request (``client.request(..., auth=adapter.auth)``): the shared client pool stays unauthenticated.

* ``api_key`` — a fixed header; ``basic`` — RFC 7617; ``bearer`` — a fixed token;
* ``oauth2`` — client credentials with a cached, shared, refreshed token
  (:mod:`esb.adapters.auth.oauth2`).

:func:`scrubbed` keeps secrets out of delivery errors: a destination that echoes the request's
``Authorization`` header in its error body (which the rest adapter quotes) or a URL with
credentials would otherwise carry them into the dead-letter queue and the logs.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Generator, Iterator

import httpx

from esb.adapters.auth.oauth2 import OAuth2ClientCredentials, redact_url
from esb.adapters.auth.settings import (
    ApiKeyOutbound,
    BasicOutbound,
    BearerOutbound,
    OAuth2Outbound,
)
from esb.adapters.http import check_host
from esb.bus.errors import DeliveryError, TransformError

__all__ = ["HeaderAuth", "OAuth2ClientCredentials", "build_outbound_auth", "redact_url",
           "scrub", "scrubbed", "secrets_of"]

OutboundAuthSettings = ApiKeyOutbound | BasicOutbound | BearerOutbound | OAuth2Outbound


class HeaderAuth(httpx.Auth):
    """Sets one header to a fixed value (API key, basic, bearer)."""

    def __init__(self, header: str, value: str, secret: str) -> None:
        self.header = header
        self._value = value
        #: The configured secret ``value`` is built from (for :func:`secrets_of`).
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.header] = self._value
        yield request

    def __repr__(self) -> str:
        return f"HeaderAuth({self.header!r}, '***')"


def build_outbound_auth(settings: OutboundAuthSettings | None,
                        http: Callable[[], httpx.AsyncClient] | None = None,
                        allowed_hosts: tuple[str, ...] = ()) -> httpx.Auth | None:
    """The ``httpx.Auth`` for a destination's ``auth:`` settings (``None`` without). The
    OAuth 2.0 token endpoint is checked against the outbound allow-list like any URL."""
    if settings is None:
        return None
    if isinstance(settings, ApiKeyOutbound):
        key = settings.value.get_secret_value()
        return HeaderAuth(settings.header, key, key)
    if isinstance(settings, BasicOutbound):
        password = settings.password.get_secret_value()
        raw = base64.b64encode(f"{settings.username}:{password}".encode()).decode("ascii")
        return HeaderAuth("Authorization", f"Basic {raw}", password)
    if isinstance(settings, BearerOutbound):
        token = settings.token.get_secret_value()
        return HeaderAuth("Authorization", f"Bearer {token}", token)
    check_host(settings.token_url, allowed_hosts, "auth.token_url")
    return OAuth2ClientCredentials(settings, http)


def secrets_of(auth: httpx.Auth | None) -> list[str]:
    """Every value that must not appear in an error: the configured secret, the header value
    built from it and the current OAuth token (longest first)."""
    out: list[str] = []
    if isinstance(auth, HeaderAuth):
        out += [auth._value, auth._secret, *auth._value.split(" ", 1)[1:]]
    elif isinstance(auth, OAuth2ClientCredentials):
        out.append(auth.settings.client_secret.get_secret_value())
        if auth._token:
            out.append(auth._token)
    return sorted({s for s in out if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def scrubbed(auth: httpx.Auth | None, *, url: str | None = None) -> Iterator[None]:
    """Re-raise a :class:`DeliveryError` whose message holds a secret of ``auth`` (or the
    credentials of ``url``) as the same error with them replaced by ``***``."""
    try:
        yield
    except DeliveryError as exc:
        if isinstance(exc, TransformError):
            raise
        secrets = secrets_of(auth)
        if url is not None:
            parts = httpx.URL(url)
            if parts.password:
                secrets.append(parts.password)
        message = str(exc)
        clean = scrub(message, sorted(set(secrets), key=len, reverse=True))
        if clean == message:
            raise
        new = type(exc)(clean, status=exc.status, retry_after=exc.retry_after)
        raise new from exc.__cause__
