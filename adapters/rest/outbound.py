"""rest outbound: envelope → HTTP request through the shared httpx client.

Error translation (the one place httpx errors become esb errors): 2xx accepted; 408, 425, 429
and 5xx transient (``Retry-After`` kept); other 4xx and 3xx permanent; timeouts and transport
errors transient.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson
from esb.adapters.rest.settings import RestOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import CLOUDEVENTS_JSON, Envelope
from esb.bus.errors import ConfigError, PermanentError, TransientError

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
TRANSIENT_STATUSES = frozenset({408, 425, 429})


class RestOutbound:
    def __init__(self, settings: RestOutboundSettings, ctx: OutboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self._templated = bool(_FIELD.search(settings.url))
        if not self._templated:
            check_host(settings.url, ctx.allowed_hosts, config=True)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = self.ctx.http()

    async def stop(self) -> None:
        return None  # the client pool belongs to the daemon

    async def send(self, envelope: Envelope) -> None:
        s = self.settings
        url = render_url(s.url, envelope) if self._templated else s.url
        if self._templated:
            check_host(url, self.ctx.allowed_hosts)
        headers = dict(s.headers)
        headers["Idempotency-Key"] = envelope.key
        if envelope.correlationid:
            headers["X-Correlation-Id"] = envelope.correlationid
        if envelope.traceparent:
            headers["traceparent"] = envelope.traceparent
        if s.cloudevents == "structured":
            body = envelope.to_json()
            headers["Content-Type"] = CLOUDEVENTS_JSON
        else:
            body = envelope.data_bytes()
            if envelope.datacontenttype or envelope.is_json:
                headers["Content-Type"] = envelope.datacontenttype or "application/json"
            if s.cloudevents == "binary":
                headers.update(binary_headers(envelope))
        client = self._client or self.ctx.http()
        try:
            response = await client.request(s.method, url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{s.method} {url}: timed out") from exc
        except httpx.HTTPError as exc:
            raise TransientError(f"{s.method} {url}: {type(exc).__name__}: {exc}") from exc
        classify(response, f"{s.method} {url}")


def classify(response: httpx.Response, what: str) -> None:
    """Raise the esb error a non-2xx response means."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"{what}: HTTP {status} {response.reason_phrase}"
    snippet = response.text[:200].strip() if response.content else ""
    if snippet:
        detail += f": {snippet}"
    if status >= 500 or status in TRANSIENT_STATUSES:
        raise TransientError(detail, status=status,
                             retry_after=parse_retry_after(response.headers.get("retry-after")))
    raise PermanentError(detail, status=status)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
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


def render_url(template: str, envelope: Envelope) -> str:
    def value(m: re.Match[str]) -> str:
        path = m.group(1).split(".")
        current: Any = envelope.data if path[0] == "data" else getattr(envelope, path[0], None)
        for part in path[1:]:
            current = current.get(part) if isinstance(current, dict) else None
        if current is None:
            raise PermanentError(f"URL template field {{{m.group(1)}}} is missing from the "
                                 "envelope")
        return quote(str(current), safe="")

    return _FIELD.sub(value, template)


def check_host(url: str, allowed: tuple[str, ...], *, config: bool = False) -> None:
    if not allowed:
        return
    host = urlsplit(url).hostname or ""
    if host not in allowed:
        msg = f"host {host!r} is not in http.allowed_hosts"
        raise ConfigError([msg]) if config else PermanentError(msg)


def binary_headers(envelope: Envelope) -> dict[str, str]:
    ce = envelope.to_cloudevent()
    out = {}
    for name, value in ce.items():
        if name in ("data", "data_base64", "datacontenttype") or name.startswith("esb"):
            continue
        out[f"ce-{name}"] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return out
