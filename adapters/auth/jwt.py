"""Bearer JWT verification with PyJWT: signature (HS* secret, RS* PEM key or JWKS file), then
``exp``/``nbf``/``iat`` (with leeway), ``aud`` and ``iss``.

Error texts are fixed sentences: they never repeat the token or any part of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet

from esb.adapters.auth.settings import JwtInbound
from esb.bus.errors import ConfigError

#: What a refused token is told, by PyJWT's error (the first that matches, in this order).
_WHY: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf/iat)"),
    (jwt.InvalidAudienceError, "the token's audience (aud) is not accepted"),
    (jwt.InvalidIssuerError, "the token's issuer (iss) is not accepted"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
    (jwt.DecodeError, "the token is malformed"),
    (jwt.PyJWTError, "the token is invalid"),
)


class InvalidToken(Exception):
    """The token was refused; the message is safe to show to the client."""


class JwtVerifier:
    def __init__(self, settings: JwtInbound, config_dir: Path) -> None:
        self.settings = settings
        self._key: Any = None
        self._jwks: dict[str | None, PyJWK] = {}
        if settings.secret is not None:
            self._key = settings.secret.get_secret_value()
        elif settings.public_key_file:
            path = config_dir / settings.public_key_file
            try:
                self._key = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError([f"auth.public_key_file: cannot read {path}: {exc}"]) from exc
        else:
            assert settings.jwks_file
            path = config_dir / settings.jwks_file
            try:
                keys = PyJWKSet.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as exc:
                raise ConfigError([f"auth.jwks_file: cannot load {path}: {exc}"]) from exc
            self._jwks = {k.key_id: k for k in keys.keys}

    def _key_for(self, token: str) -> Any:
        if not self._jwks:
            return self._key
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise InvalidToken("the token is malformed") from None
        if kid in self._jwks:
            return self._jwks[kid].key
        if kid is None and len(self._jwks) == 1:
            return next(iter(self._jwks.values())).key
        raise InvalidToken("the token's key id (kid) is not in the key set")

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims, or :class:`InvalidToken`."""
        s = self.settings
        key = self._key_for(token)
        options: dict[str, Any] = {"require": list(s.require)}
        try:
            return jwt.decode(token, key, algorithms=list(s.algorithms), audience=s.audience,
                              issuer=s.issuer, leeway=s.leeway, options=options)
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token lacks the required {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(next(why for kind, why in _WHY if isinstance(exc, kind))) from None
