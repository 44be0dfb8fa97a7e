"""Settings of the rest adapter's two sides."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from esb.adapters.auth.settings import InboundAuth, OutboundAuth
from esb.adapters.http import RESERVED_PATHS
from esb.adapters.rest.params import ParamType, path_names
from esb.adapters.spec import AdapterSettings
from esb.bus.config.units import Duration, Size

#: Literal segments, or a whole segment ``{name}`` naming a path parameter.
_PATH = re.compile(r"^/(?:(?:[A-Za-z0-9_.~-]+|\{[A-Za-z_][A-Za-z0-9_]*\})(?:/|$))*$")

DEFAULT_CONTENT_TYPES = ["application/json", "application/xml", "text/xml", "text/plain",
                         "application/cloudevents+json"]


class PollCursor(AdapterSettings):
    """Where the next poll starts: a query parameter filled from the last item (``field``) or
    a page number (``page``)."""

    model_config = ConfigDict(populate_by_name=True)

    #: Query parameter carrying the cursor (``since``, ``updated_after``, ``page`` ...).
    param: str = Field(min_length=1)
    #: ``field``: the value of ``from`` in the last item of a page (a watermark; the API returns
    #: items in ascending order of it); ``page``: a page number, advanced after a full page.
    kind: Literal["field", "page"] = "field"
    #: Field (dotted path or JMESPath) of the last item giving the next cursor value (``field``).
    from_: str | None = Field(None, alias="from", validate_default=True)
    #: Cursor value for the very first poll (none: the parameter is left out; page: 1).
    initial: str | int | None = None
    #: Items on a full page (``page``): a shorter page is polled again until it fills up.
    page_size: int | None = Field(None, ge=1)
    #: The parameter's text with ``{cursor}`` standing for the value, for APIs that take the
    #: watermark inside a query language (SOQL ``... WHERE SystemModstamp > {cursor}``, an
    #: OData ``$filter``, JQL); by default the parameter is the value alone.
    template: str | None = Field(None, pattern=r"\{cursor\}")

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind", "field") == "field" and not v:
            raise ValueError("a field cursor needs `from` (the item field to continue from)")
        return v


class PollSettings(AdapterSettings):
    """GET ``url`` every ``interval``; each item of the answer becomes one envelope."""

    url: str = Field(pattern=r"^https?://")
    interval: Duration = 30.0
    #: Where the list is in the answer: a dotted path or JMESPath (``data.items``); by default
    #: the answer itself is the list.
    items: str | None = None
    cursor: PollCursor | None = None
    #: Item field (dotted path or JMESPath) identifying an item: envelope id, idempotency key
    #: and subject, and what de-duplicates items at the watermark boundary.
    id: str | None = None
    #: Envelope type (default: the source's ``type``, else ``<source>.polled``).
    type: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    #: Credentials for the polled API (same forms as an outbound ``auth:``).
    auth: OutboundAuth | None = None
    timeout: Duration = 30.0
    #: Pages fetched per tick while catching up (each full page is followed at once).
    max_pages: int = Field(10, ge=1)
    #: Largest answer read (default: ``http.max_body``, at least 1 MiB); a larger one fails
    #: the poll (logged; the cursor stays).
    max_body: Size | None = Field(None, ge=1)


class RestInboundSettings(AdapterSettings):
    #: Pull items from an API on a schedule (a source with ``poll`` and no ``path`` only polls).
    poll: PollSettings | None = None
    #: The path this source serves; ``PATH/<type>`` sets the envelope type from the URL.
    #: Required unless ``poll`` is set.
    path: str | None = Field(None, validate_default=True)
    #: How failures are answered: ``problem`` (RFC 9457 problem+json) or ``fhir`` (a FHIR
    #: ``OperationOutcome`` in ``application/fhir+json``, for sources facing FHIR clients).
    errors: Literal["problem", "fhir"] = "problem"
    #: GET and DELETE take no body: their path and query parameters are the envelope's data.
    methods: list[Literal["GET", "POST", "PUT", "PATCH", "DELETE"]] = \
        Field(default_factory=lambda: ["POST"])
    #: Types of path (``{id}`` in ``path``) and query parameters: ``string`` (default),
    #: ``integer``, ``number``, ``boolean``; a value that does not fit is a 400.
    params: dict[str, ParamType] = Field(default_factory=dict)
    #: Envelope type when the request names none (``ce-type`` header or ``PATH/<type>``).
    type: str | None = None
    #: Accepted media types (``application/octet-stream`` opts in to binary payloads).
    content_types: list[str] = Field(default_factory=lambda: list(DEFAULT_CONTENT_TYPES))
    #: Body size limit; defaults to ``http.max_body``.
    max_body: Size | None = None
    #: Request headers kept on the envelope (``esbheaders``), e.g. ``[x-request-id]``.
    keep_headers: list[str] = Field(default_factory=list)
    #: Who may call: ``api_key``, ``basic`` or ``jwt`` (see docs/adapters.md, Authentication).
    auth: InboundAuth | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            # "poll" absent from info.data: it was given but invalid (reported already).
            if "poll" in info.data and info.data["poll"] is None:
                raise PydanticCustomError("missing", "Field required")
            return None
        if not _PATH.match(v) or v.startswith(RESERVED_PATHS):
            raise ValueError("path must start with / and not shadow "
                             + ", ".join(RESERVED_PATHS) + "; {name} is a whole path segment")
        names = path_names(v)
        if len(set(names)) != len(names):
            raise ValueError("path parameter names must differ")
        return v.rstrip("/") or "/"


class RestOutboundSettings(AdapterSettings):
    #: Target URL; ``{id}``, ``{type}``, ``{source}``, ``{subject}``, ``{data.field}`` are
    #: filled from the envelope (URL-quoted).
    url: str
    #: ``GET`` and ``HEAD`` send no body (the envelope's data only fills the URL template).
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET", "HEAD"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    #: Send CloudEvents attributes as ``ce-*`` headers (binary) or the whole event as the body
    #: (structured); ``none`` sends the payload alone.
    cloudevents: Literal["none", "binary", "structured"] = "none"
    #: Credentials: ``api_key``, ``basic``, ``bearer`` or ``oauth2`` (client credentials).
    auth: OutboundAuth | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must be http:// or https://")
        return v
