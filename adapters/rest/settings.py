"""Settings of the rest adapter's two sides."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from esb.adapters.spec import AdapterSettings
from esb.bus.config.units import Size

DEFAULT_CONTENT_TYPES = ["application/json", "application/xml", "text/xml", "text/plain",
                         "application/cloudevents+json"]


class RestInboundSettings(AdapterSettings):
    #: The path this source serves; ``PATH/<type>`` sets the envelope type from the URL.
    path: str
    methods: list[Literal["POST", "PUT", "PATCH"]] = Field(default_factory=lambda: ["POST"])
    #: Envelope type when the request names none (``ce-type`` header or ``PATH/<type>``).
    type: str | None = None
    #: Accepted media types (``application/octet-stream`` opts in to binary payloads).
    content_types: list[str] = Field(default_factory=lambda: list(DEFAULT_CONTENT_TYPES))
    #: Body size limit; defaults to ``http.max_body``.
    max_body: Size | None = None
    #: Request headers kept on the envelope (``esbheaders``), e.g. ``[x-request-id]``.
    keep_headers: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not re.match(r"^/[A-Za-z0-9/_.~-]*$", v) or v.startswith(("/admin", "/metrics",
                                                                      "/healthz", "/readyz")):
            raise ValueError("path must start with / and not shadow /admin, /metrics, "
                             "/healthz or /readyz")
        return v.rstrip("/") or "/"


class RestOutboundSettings(AdapterSettings):
    #: Target URL; ``{id}``, ``{type}``, ``{source}``, ``{subject}``, ``{data.field}`` are
    #: filled from the envelope (URL-quoted).
    url: str
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    #: Send CloudEvents attributes as ``ce-*`` headers (binary) or the whole event as the body
    #: (structured); ``none`` sends the payload alone.
    cloudevents: Literal["none", "binary", "structured"] = "none"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must be http:// or https://")
        return v
