"""HTTP edge concerns shared by the HTTP-based adapters (rest, webhook, graphql, soap).

* a request's headers as a plain dict (:func:`header_dict`; its body is read by
  :func:`esb.bus.httpbody.read_body`, its Content-Type by :func:`esb.bus.payload.media_type`),
  and why an envelope made from it is invalid, as one line (:func:`validation_detail`);
* the status → delivery error mapping: 2xx accepted; 408, 425, 429 and 5xx transient (with
  ``Retry-After``, delta-seconds or HTTP-date, as ``retry_after``); every other status
  permanent; timeouts and connection failures transient (:func:`raise_for_status`,
  :func:`transport_error`);
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
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from esb.bus.errors import ConfigError, PermanentError, TransientError
from esb.bus.hosts import host_allowed

if TYPE_CHECKING:
    from esb.adapters.spec import OutboundContext
    from esb.bus.reply import Reply

#: Paths of the daemon's own pages and APIs, which no source may serve (or shadow).
RESERVED_PATHS = ("/admin", "/metrics", "/healthz", "/readyz", "/console", "/docs",
                  "/openapi.json")

MessageForm = Literal["prose", "colon"]


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


def validation_detail(exc: ValidationError) -> str:
    """A refused envelope's validation errors as one line (``loc: message; ...``)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}"
                     for e in exc.errors())


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from the response's ``Retry-After`` (delta-seconds or HTTP-date)."""
    value = (response.headers.get("retry-after") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def is_transient_status(status: int) -> bool:
    """408, 425, 429 and 5xx: worth retrying."""
    return status in {408, 425, 429} or status >= 500


def raise_for_status(response: httpx.Response, what: str, form: MessageForm = "prose") -> None:
    """Raise the esb error a non-2xx response means: the Transient/PermanentError the status
    calls for."""
    status = response.status_code
    if 200 <= status < 300:
        return
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
        raise TransientError(message, status=status, retry_after=retry_after(response))
    raise PermanentError(message, status=status)


async def send_plain(client: httpx.AsyncClient, method: str, url: httpx.URL | str,
                     headers: dict[str, str], content: bytes | None, *, answer: bool = False,
                     timeout: httpx.Timeout | None = None
                     ) -> httpx.Response | int | Reply | None:
    """A plain request (no auth, body in memory) on the client's short path when it has one
    (the daemon's client: ``send_plain`` of :class:`esb.bus.runtime.httptransport.LeanClient`):
    the status of a 2xx answer (with ``answer``: usually the answer itself, as a
    :class:`Reply`), any other answer as an :class:`httpx.Response`; None when the client
    has no short path for it (the caller uses ``client.request``). ``timeout``: this call's
    (default: the client's)."""
    short = getattr(client, "send_plain", None)
    if short is None:
        return None
    return await short(method, url if isinstance(url, httpx.URL) else httpx.URL(url), headers,
                       content, answer=answer, timeout=timeout)  # type: ignore[no-any-return]


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
    host = urlsplit(url).hostname or ""
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
