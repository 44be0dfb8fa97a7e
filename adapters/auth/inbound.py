"""Inbound authentication for HTTP sources: API key, HTTP basic, bearer JWT.

An adapter builds an :class:`Authenticator` once (``build_authenticator(settings.auth,
ctx.config_dir)``, ``None`` when the source has no ``auth:``) and calls :func:`authenticate`
before it reads the request body. It returns the principal (``None`` without auth), or raises
:class:`Unauthorized`, whose ``detail`` never repeats the presented credential and whose
``challenge`` is the ``WWW-Authenticate`` value; :func:`unauthorized_problem` turns it into
the 401 problem+json answer.

Comparisons are constant-time (:func:`hmac.compare_digest` over SHA-256 digests, so neither
the length nor the first differing byte of a key leaks), and every configured key or user is
compared, so the time taken does not tell which one nearly matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.auth.settings import ApiKeyInbound, BasicInbound, JwtInbound
from esb.bus.problem import problem


class Unauthorized(Exception):
    """Authentication failed. ``detail`` is safe to show; ``challenge`` is the
    ``WWW-Authenticate`` header value."""

    def __init__(self, detail: str, challenge: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.challenge = challenge


class Authenticator(Protocol):
    async def check(self, request: Request) -> str:
        """The principal, or :class:`Unauthorized`."""
        ...


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def _matches(presented: str, candidates: list[tuple[str, bytes]]) -> str | None:
    """The name of the candidate equal to ``presented``; every candidate is compared."""
    got = _digest(presented)
    found: str | None = None
    for name, digest in candidates:
        if hmac.compare_digest(got, digest) and found is None:
            found = name
    return found


class ApiKeyAuthenticator:
    def __init__(self, settings: ApiKeyInbound) -> None:
        self.header = settings.header
        self.query = settings.query
        self._keys = [(name, _digest(key)) for name, key in settings.named_keys()]
        where = f'header="{self.header}"' if self.header else f'query="{self.query}"'
        self.challenge = f'ApiKey realm="esb", {where}'

    async def check(self, request: Request) -> str:
        if self.header:
            presented, where = request.headers.get(self.header), f"the {self.header} header"
        else:
            assert self.query
            presented, where = request.query_params.get(self.query), \
                f"the {self.query!r} query parameter"
        if not presented:
            raise Unauthorized(f"an API key is required in {where}", self.challenge)
        principal = _matches(presented, self._keys)
        if principal is None:
            raise Unauthorized(f"the API key in {where} is not valid", self.challenge)
        return principal


class BasicAuthenticator:
    def __init__(self, settings: BasicInbound) -> None:
        self._users = {name: _digest(pw.get_secret_value())
                       for name, pw in settings.users.items()}
        self._dummy = _digest("\x00not a password\x00")
        self.challenge = f'Basic realm="{settings.realm}", charset="UTF-8"'

    async def check(self, request: Request) -> str:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            raise Unauthorized("HTTP basic credentials are required", self.challenge)
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise Unauthorized("the basic credentials are not valid base64 'user:password'",
                               self.challenge) from None
        user, sep, password = decoded.partition(":")
        # Compare against a dummy digest for unknown users: same work either way.
        expected = self._users.get(user, self._dummy)
        ok = hmac.compare_digest(_digest(password), expected)
        if not sep or user not in self._users or not ok:
            raise Unauthorized("the user name or password is not valid", self.challenge)
        return user


class JwtAuthenticator:
    def __init__(self, settings: JwtInbound, config_dir: Path) -> None:
        # PyJWT (and cryptography under it) load only when a source verifies JWTs: every
        # daemon start would pay ~50 ms for them otherwise.
        from esb.adapters.auth.jwt import InvalidToken, JwtVerifier

        self.verifier = JwtVerifier(settings, config_dir)
        self._refused = InvalidToken
        self.claim = settings.principal_claim
        self.realm = settings.realm

    def _challenge(self, description: str | None = None) -> str:
        if description is None:
            return f'Bearer realm="{self.realm}"'
        return (f'Bearer realm="{self.realm}", error="invalid_token", '
                f'error_description="{description}"')

    async def check(self, request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a bearer token is required (Authorization: Bearer <JWT>)",
                               self._challenge())
        try:
            claims = self.verifier.verify(token)
        except self._refused as exc:
            raise Unauthorized(str(exc), self._challenge(str(exc))) from None
        principal = claims.get(self.claim)
        if principal is None or principal == "":
            message = f"the token lacks the {self.claim!r} claim naming the principal"
            raise Unauthorized(message, self._challenge(message))
        return str(principal)


def build_authenticator(settings: ApiKeyInbound | BasicInbound | JwtInbound | None,
                        config_dir: Path) -> Authenticator | None:
    """The authenticator for a source's ``auth:`` settings (``None`` when there are none)."""
    if settings is None:
        return None
    if isinstance(settings, ApiKeyInbound):
        return ApiKeyAuthenticator(settings)
    if isinstance(settings, BasicInbound):
        return BasicAuthenticator(settings)
    return JwtAuthenticator(settings, config_dir)


async def authenticate(authenticator: Authenticator | None, request: Request) -> str | None:
    """The helper adapters call first: the principal, ``None`` without auth, or
    :class:`Unauthorized`."""
    if authenticator is None:
        return None
    return await authenticator.check(request)


def unauthorized_problem(exc: Unauthorized) -> Response:
    """The 401 problem+json answer, with ``WWW-Authenticate``."""
    return problem(401, "Unauthorized", exc.detail,
                   headers={"WWW-Authenticate": exc.challenge})
