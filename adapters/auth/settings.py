"""Settings of the ``auth:`` key: inbound (HTTP sources) and outbound (HTTP destinations).

Every secret is a :class:`~pydantic.SecretStr`, so ``repr``, ``str`` and ``model_dump`` of a
settings object show ``'**********'`` instead of the value. Values normally come from ``${ENV}``
references in ``esb.yaml``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from esb.adapters.spec import AdapterSettings
from esb.bus.config.units import Duration


def _non_empty(values: list[SecretStr] | dict[str, SecretStr]
               ) -> list[SecretStr] | dict[str, SecretStr]:
    secrets = values.values() if isinstance(values, dict) else values
    if any(not v.get_secret_value() for v in secrets):
        raise ValueError("secrets must not be empty strings")
    return values


#: A list of secrets none of which is an empty string.
NonEmptySecrets = Annotated[list[SecretStr], AfterValidator(_non_empty)]


# -- inbound ---------------------------------------------------------------------------------


class ApiKeyInbound(AdapterSettings):
    """A shared key in a request header (default ``X-API-Key``) or a query parameter."""

    type: Literal["api_key"]
    #: Header carrying the key; the default when neither ``header`` nor ``query`` is given.
    header: str | None = None
    #: Query parameter carrying the key instead (keys in URLs end up in access logs: prefer a
    #: header where the client allows it).
    query: str | None = None
    #: Valid keys: a list, or ``{name: key}`` so the principal names the client.
    keys: Annotated[list[SecretStr] | dict[str, SecretStr],
                    AfterValidator(_non_empty)] = Field(min_length=1)

    @model_validator(mode="after")
    def _where(self) -> ApiKeyInbound:
        if self.header and self.query:
            raise ValueError("give either header or query, not both")
        if not self.header and not self.query:
            self.header = "X-API-Key"
        return self

    def named_keys(self) -> list[tuple[str, str]]:
        """``(principal, key)`` pairs; list entries are named ``api-key-1`` ..."""
        if isinstance(self.keys, dict):
            return [(name, k.get_secret_value()) for name, k in self.keys.items()]
        return [(f"api-key-{i}", k.get_secret_value()) for i, k in enumerate(self.keys, 1)]


class BasicInbound(AdapterSettings):
    """HTTP basic authentication (RFC 7617) against a fixed user list."""

    type: Literal["basic"]
    #: ``{username: password}``.
    users: dict[str, SecretStr] = Field(min_length=1)
    realm: str = "esb"

    @field_validator("users")
    @classmethod
    def _users(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        _non_empty(v)
        if any(":" in name or not name for name in v):
            raise ValueError("user names must be non-empty and must not contain ':'")
        return v


JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512"]


class JwtInbound(AdapterSettings):
    """``Authorization: Bearer <JWT>``, verified with PyJWT (signature, exp, nbf, aud, iss)."""

    type: Literal["jwt"]
    algorithms: list[JwtAlgorithm] = Field(default_factory=lambda: ["RS256"], min_length=1)
    #: HMAC key (HS*).
    secret: SecretStr | None = None
    #: JSON Web Key Set file (RS*), relative to the configuration folder; the token's ``kid``
    #: picks the key.
    jwks_file: str | None = None
    #: PEM public key file (RS*), relative to the configuration folder.
    public_key_file: str | None = None
    #: Accepted ``aud`` value(s); when set, tokens without a matching ``aud`` are refused.
    audience: str | list[str] | None = None
    #: Required ``iss`` value.
    issuer: str | None = None
    #: Clock skew allowed on ``exp``/``nbf``/``iat``.
    leeway: Duration = 0.0
    #: Claims every token must carry (``exp`` by default: no eternal tokens).
    require: list[str] = Field(default_factory=lambda: ["exp"])
    #: Claim naming the principal (kept as ``esbheaders.principal``).
    principal_claim: str = "sub"
    realm: str = "esb"

    @model_validator(mode="after")
    def _key(self) -> JwtInbound:
        given = [n for n in ("secret", "jwks_file", "public_key_file") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of secret, jwks_file, public_key_file")
        hmac = all(a.startswith("HS") for a in self.algorithms)
        rsa = all(a.startswith("RS") for a in self.algorithms)
        # Mixing families would allow the HS256-with-the-public-key confusion attack.
        if self.secret is not None and not hmac:
            raise ValueError("secret goes with HS256/HS384/HS512 algorithms only")
        if self.secret is None and not rsa:
            raise ValueError("jwks_file and public_key_file go with RS256/RS384/RS512 only")
        if self.secret is not None and not self.secret.get_secret_value():
            raise ValueError("secret must not be empty")
        return self


InboundAuth = Annotated[ApiKeyInbound | BasicInbound | JwtInbound, Field(discriminator="type")]


# -- outbound --------------------------------------------------------------------------------


class ApiKeyOutbound(AdapterSettings):
    """Send a fixed key in a header."""

    type: Literal["api_key"]
    header: str = "X-API-Key"
    value: SecretStr


class BasicOutbound(AdapterSettings):
    """HTTP basic authentication."""

    type: Literal["basic"]
    username: str
    password: SecretStr


class BearerOutbound(AdapterSettings):
    """A fixed bearer token (``Authorization: Bearer <token>``)."""

    type: Literal["bearer"]
    token: SecretStr


class OAuth2Outbound(AdapterSettings):
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4): the token is fetched from
    ``token_url``, cached until shortly before it expires and refreshed once when the
    destination answers 401."""

    type: Literal["oauth2"]
    token_url: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str | None = None
    #: Sent as the ``audience`` form field (Auth0 and others need it).
    audience: str | None = None
    #: How the client authenticates at the token endpoint: HTTP basic (the RFC's default) or
    #: ``client_id``/``client_secret`` form fields.
    client_auth: Literal["basic", "post"] = "basic"
    #: The token is renewed this long before ``expires_in`` runs out (at most half of it).
    refresh_before: Duration = 30.0
    timeout: Duration = 10.0


OutboundAuth = Annotated[ApiKeyOutbound | BasicOutbound | BearerOutbound | OAuth2Outbound,
                         Field(discriminator="type")]
