"""HTTP edge concerns shared by the HTTP-based adapters (rest, webhook, graphql, soap).

* reading a request body under a size limit (:func:`read_body`, :class:`BodyTooLarge`), its
  headers as a plain dict (:func:`header_dict`) and its Content-Type
  (:func:`esb.bus.payload.media_type`);
* the status → delivery error mapping: 2xx accepted; 408, 425, 429 and 5xx transient (with
  ``Retry-After``, delta-seconds or HTTP-date, as ``retry_after``); every other status
  permanent; timeouts and connection failures transient (:func:`status_error`,
  :func:`raise_for_status`, :func:`transport_error`);
* the outbound host allow-list (``http.allowed_hosts``) check (:func:`check_host`; the
  entries' rules live in :mod:`esb.bus.hosts`);
* ``start``/``stop`` of an outbound side sending through the runtime's shared client
  (:class:`PooledClient`).

Error messages come in two forms (``form``), kept so each adapter's messages read as before:
``"prose"`` (webhook, graphql, soap) — ``"<what> answered HTTP 503"``, ``"<what> timed out:
ReadTimeout: …"``, ``"<what> failed: ConnectError: …"``; ``"colon"`` (rest) — ``"<what>: HTTP
503 Service Unavailable: <start of the body>"``, ``"<what>: timed out"``, ``"<what>:
ConnectError: …"``.
"""

from __future__ import annotations

import email.utils
import re
import time
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from esb.bus.errors import ConfigError, DeliveryError, PermanentError, TransientError
from esb.bus.hosts import host_allowed

if TYPE_CHECKING:
    from esb.adapters.spec import OutboundContext

TRANSIENT_STATUSES = frozenset({408, 425, 429})

#: Paths of the daemon's own pages and APIs, which no source may serve (or shadow).
RESERVED_PATHS = ("/admin", "/metrics", "/healthz", "/readyz", "/console", "/docs",
                  "/openapi.json")

MessageForm = Literal["prose", "colon"]


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit.

    ``declared`` is the Content-Length that gave it away (``None`` when the streamed body did).
    """

    def __init__(self, limit: int, declared: str | None = None) -> None:
        self.limit, self.declared = limit, declared
        if declared is not None:
            super().__init__(f"body of {declared} bytes exceeds the limit of {limit}")
        else:
            super().__init__(f"body exceeds the limit of {limit} bytes")


class EncodingRefused(Exception):
    """A ``Content-Encoding`` esb does not decode (415), or a body that does not decode (400).
    gzip and deflate are decoded under the same body limit as plain bodies."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = "Unsupported content encoding" if status == 415 else "Bad content encoding"


#: ``Content-Encoding`` values read_body decodes, with zlib's ``wbits`` for each.
_DECODED = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
            "deflate": zlib.MAX_WBITS}


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from ``encoding`` (a ``Content-Encoding`` value), never more than
    ``limit`` bytes of it: :class:`BodyTooLarge` past that, :class:`EncodingRefused` for an
    encoding other than gzip/deflate/identity (415) or a body that does not decode (400)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = _DECODED.get(coding)
    if wbits is None:
        raise EncodingRefused(415, f"Content-Encoding {encoding[:40]!r} is not accepted; send "
                                   "the body as is, or gzip or deflate")
    for bits in (wbits, -zlib.MAX_WBITS) if coding == "deflate" else (wbits,):
        inflater = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue  # "deflate" is sent raw by some clients: try that too
        if len(out) > limit or inflater.unconsumed_tail:
            raise BodyTooLarge(limit)
        if not inflater.eof:
            break
        return out
    raise EncodingRefused(400, f"the body is not valid {coding} data")


class BadContentLength(ValueError):
    """The Content-Length header is not a number (only with ``strict_length``)."""


async def read_body(request: Request, limit: int, *, strict_length: bool = False,
                    headers: Mapping[str, str] | None = None) -> bytes:
    """The request body, refusing (:class:`BodyTooLarge`) anything over ``limit`` bytes,
    decoded from its ``Content-Encoding`` (:func:`decode_body`, the limit holding for the
    decoded body too).

    A non-numeric Content-Length is ignored (the stream is still counted), or refused with
    :class:`BadContentLength` when ``strict_length`` is set. ``headers``: the request's
    :func:`header_dict` when the caller already has it.
    """
    declared = (headers if headers is not None else request.headers).get("content-length")
    if strict_length and declared is not None and not declared.isdigit():
        raise BadContentLength("Content-Length is not a number")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, declared)
    # The ASGI messages read directly (what Starlette's ``request.stream()`` does, minus an
    # async generator per request: a body nearly always arrives as one message). The stream
    # is consumed: read the body with this function or with Starlette's, not both.
    receive = request.receive
    first = b""
    chunks: list[bytes] | None = None
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnect()
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            if not first:
                first = chunk
            else:
                if chunks is None:
                    chunks = [first]
                chunks.append(chunk)
        if not message.get("more_body", False):
            body = b"".join(chunks) if chunks is not None else first
            coding = (headers if headers is not None else request.headers).get(
                "content-encoding")
            return body if coding is None else decode_body(body, coding, limit)


def header_dict(request: Request) -> dict[str, str]:
    """The request's headers as a dict of lower-cased names, the first of a repeated header
    winning (as ``request.headers.get`` does): one pass, then O(1) lookups instead of a scan
    of the header list per lookup."""
    return {k.decode("latin-1"): v.decode("latin-1")
            for k, v in reversed(request.scope["headers"])}


class JSONBytesResponse(Response):
    """A response whose JSON body is already bytes, its headers built directly: what
    ``Response(body, status, media_type="application/json")`` sends, without the generic
    header assembly on every accepted message."""

    def __init__(self, body: bytes, status_code: int,
                 extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-length", str(len(body)).encode("latin-1")),
                            (b"content-type", b"application/json"), *extra]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after(response: httpx.Response) -> float | None:
    """The response's ``Retry-After``, in seconds."""
    return parse_retry_after(response.headers.get("retry-after"))


def is_transient_status(status: int) -> bool:
    """408, 425, 429 and 5xx: worth retrying."""
    return status in TRANSIENT_STATUSES or status >= 500


def status_error(response: httpx.Response, what: str,
                 form: MessageForm = "prose") -> DeliveryError | None:
    """``None`` for 2xx, else the Transient/PermanentError the status calls for."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    if form == "colon":
        message = f"{what}: HTTP {status} {response.reason_phrase}"
        # Generous: the delivery worker cuts it to length only after removing secrets a
        # destination may echo (a cut first could leave the start of one).
        snippet = response.text[:2000].strip() if response.content else ""
        if snippet:
            message += f": {snippet}"
    else:
        message = f"{what} answered HTTP {status}"
    if is_transient_status(status):
        return TransientError(message, status=status, retry_after=retry_after(response))
    return PermanentError(message, status=status)


def raise_for_status(response: httpx.Response, what: str, form: MessageForm = "prose") -> None:
    """Raise the esb error a non-2xx response means."""
    error = status_error(response, what, form)
    if error is not None:
        raise error


def transport_error(exc: httpx.HTTPError, what: str,
                    form: MessageForm = "prose") -> TransientError:
    """A timeout or connection failure: always worth retrying."""
    timed_out = isinstance(exc, httpx.TimeoutException)
    if form == "colon":
        if timed_out:
            return TransientError(f"{what}: timed out")
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    kind = "timed out" if timed_out else "failed"
    return TransientError(f"{what} {kind}: {type(exc).__name__}: {exc}")


def check_host(url: str, allowed: tuple[str, ...], setting: str = "url", *,
               sending: bool = False) -> None:
    """Refuse a URL whose host is not on a non-empty allow-list: ``ConfigError`` while the
    adapter is configured, ``PermanentError`` when ``sending`` (a URL built per envelope)."""
    if host_allowed(url, allowed):
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    message = f"{setting}: host {host!r} is not in the outbound allow-list"
    if sending:
        raise PermanentError(message)
    raise ConfigError([message])


class PooledClient:
    """``start``/``stop`` of an outbound side that sends through the runtime's shared httpx
    client (``ctx.http()``): taken on start, let go of on stop, never closed."""

    ctx: OutboundContext
    _client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = self.ctx.http()

    async def stop(self) -> None:
        self._client = None  # the pool belongs to the runtime

    def client(self) -> httpx.AsyncClient:
        """The client taken on start (the pool's own when sending without a start)."""
        return self._client or self.ctx.http()


_PRINTABLE_ASCII = re.compile(r"[ -~]*")


def header_safe(value: str) -> str:
    """``value`` as an HTTP header value: as it is when it is printable ASCII (nearly always),
    else percent-encoded (UTF-8), so a key like ``commande-é`` cannot make a delivery fail
    on every attempt. The same key always gives the same header, so de-duplication holds."""
    if _PRINTABLE_ASCII.fullmatch(value):
        return value
    return quote(value, safe="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%"))
