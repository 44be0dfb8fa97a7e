"""Settings of the webhook adapter (validated at load time)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from esb.adapters.auth.settings import NonEmptySecrets, OutboundAuth
from esb.adapters.spec import AdapterSettings
from esb.adapters.webhook.signatures import decode_standard_secret

Scheme = Literal["standard", "github", "stripe", "hubspot", "hmac"]


class WebhookInboundSettings(AdapterSettings):
    """A signed-webhook receiver."""

    #: URL path the provider POSTs to.
    path: str = Field(pattern=r"^/")
    #: Signature scheme (see the scheme table in docs/adapters.md).
    scheme: Scheme = "standard"
    #: Every secret currently valid (rotation: list the new one beside the old one).
    secrets: NonEmptySecrets = Field(min_length=1)
    #: Largest accepted clock difference in seconds, in the past *and* the future.
    tolerance: int = Field(300, ge=1)
    #: How long a delivery id is remembered for replay rejection, in seconds (0: off).
    replay_window: int = Field(86_400, ge=0)
    #: ``reject`` answers a replayed delivery id with 409; ``acknowledge`` answers 202
    #: ``{"id", "duplicate": true}`` without accepting it again (for providers that retry after
    #: a lost response: any 2xx stops their retries, and 202 is what a first delivery gets).
    on_replay: Literal["reject", "acknowledge"] = "reject"
    #: Where the event type comes from: ``header:<Name>`` or ``json:<dotted.path>``;
    #: by default the scheme's own place (standard/stripe ``json:type``, github the
    #: ``X-GitHub-Event`` header plus the payload's ``action``, hmac ``json:type``).
    event_type: str | None = Field(None, pattern=r"^(header|json):.+")
    #: Event type when the configured place is empty.
    default_type: str = Field("webhook", min_length=1)
    #: CloudEvents ``source``; the endpoint name when not given.
    source: str | None = None
    #: Largest accepted body in bytes; larger ones are answered with 413.
    max_body: int = Field(1_048_576, ge=1)
    #: ``hubspot``: the URL the provider calls, as it sees it (``https://hooks.example.com/...``),
    #: when a reverse proxy makes the daemon see another; by default the request's own URL.
    public_url: str | None = Field(None, pattern=r"^https?://")
    # -- generic ``hmac`` scheme -----------------------------------------------------------
    #: ``hmac``: the header carrying the signature.
    header: str = "X-Signature"
    #: ``hmac``: the digest algorithm.
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    #: ``hmac``: how the signature is encoded.
    encoding: Literal["hex", "base64"] = "hex"
    #: ``hmac``: text before the encoded signature, e.g. ``sha256=``.
    prefix: str = ""
    #: When set, the signed content is ``<timestamp>.<body>`` and the tolerance applies.
    timestamp_header: str | None = None
    #: Header carrying the delivery id (replay rejection and envelope id).
    id_header: str | None = None

    @model_validator(mode="after")
    def _standard_secrets(self) -> WebhookInboundSettings:
        if self.scheme == "standard":
            for secret in self.secrets:
                decode_standard_secret(secret.get_secret_value())
        return self


class WebhookOutboundSettings(AdapterSettings):
    """Standard Webhooks-signed delivery to one URL."""

    #: The receiver's URL.
    url: str = Field(pattern=r"^https?://")
    #: ``whsec_<base64>`` secrets; one signature is sent per secret (rotation).
    secrets: list[SecretStr] = Field(min_length=1)
    #: ``standard``: ``{"type", "timestamp", "data"}`` as the Standard Webhooks spec suggests;
    #: ``data``: the envelope's data as is, in its own content type.
    payload: Literal["standard", "data"] = "standard"
    #: Extra request headers.
    headers: dict[str, str] = Field(default_factory=dict)
    #: Seconds per request.
    timeout: float = Field(10.0, gt=0)
    #: HTTP-level credentials on top of the signature: ``api_key``, ``basic``, ``bearer`` or
    #: ``oauth2`` (client credentials).
    auth: OutboundAuth | None = None

    @field_validator("secrets")
    @classmethod
    def _decodable(cls, v: list[SecretStr]) -> list[SecretStr]:
        for secret in v:
            decode_standard_secret(secret.get_secret_value())
        return v
