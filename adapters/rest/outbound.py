"""rest outbound: envelope → HTTP request through the shared httpx client.

Error translation is :mod:`esb.adapters.http`'s, shared with the other HTTP adapters (messages
in its ``"colon"`` form): 2xx accepted; 408, 425, 429 and 5xx transient (``Retry-After`` kept);
other 4xx and 3xx permanent; timeouts and transport errors transient.

``auth:`` is applied per request (:mod:`esb.adapters.auth.outbound`); error messages name the
URL without credentials, and secrets a destination echoes back are replaced by ``***``.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import orjson

from esb.adapters.auth.outbound import build_outbound_auth, redact_url, scrubbed
from esb.adapters.http import (
    PooledClient,
    check_host,
    header_safe,
    raise_for_status,
    send_plain,
    transport_error,
)
from esb.adapters.rest.settings import RestOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import CLOUDEVENTS_JSON, Envelope
from esb.bus.errors import DeliveryError
from esb.bus.payload import PLACEHOLDER, render
from esb.bus.reply import Reply


class RestOutbound(PooledClient):
    def __init__(self, settings: RestOutboundSettings, ctx: OutboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self._templated = bool(PLACEHOLDER.search(settings.url))
        #: Parsed once: httpx parses a string URL on every request (~5 % of a delivery).
        self._url = None if self._templated else httpx.URL(settings.url)
        if not self._templated:
            check_host(settings.url, ctx.allowed_hosts)
        self.auth = build_outbound_auth(settings.auth, ctx.http, ctx.allowed_hosts)

    async def send(self, envelope: Envelope) -> int:
        got = await self._call(envelope)
        return got if isinstance(got, int) else got.status_code

    async def request(self, envelope: Envelope) -> Reply:
        """Request/reply: the destination's 2xx answer (status, headers, body); other
        statuses raise as :meth:`send` does."""
        got = await self._call(envelope, answer=True)
        if isinstance(got, Reply):
            return got
        assert isinstance(got, httpx.Response)
        return Reply(got.status_code, dict(got.headers), got.content,
                     got.headers.get("content-type"))

    async def _call(self, envelope: Envelope, *, answer: bool = False
                    ) -> httpx.Response | int | Reply:
        """The call's response; without auth, a 2xx answer may come as its status alone —
        or with ``answer`` as a :class:`Reply` — (the client's short path for a plain
        request, :func:`esb.adapters.http.send_plain`)."""
        s = self.settings
        url = render_url(s.url, envelope) if self._templated else s.url
        if self._templated:
            check_host(url, self.ctx.allowed_hosts, sending=True)
        headers = dict(s.headers)
        headers["Idempotency-Key"] = header_safe(envelope.key)
        if envelope.correlationid:
            headers["X-Correlation-Id"] = header_safe(envelope.correlationid)
        if envelope.traceparent:
            headers["traceparent"] = envelope.traceparent
        body: bytes | None
        if s.method in _BODILESS:
            body = None
        elif s.cloudevents == "structured":
            body = envelope.to_json()
            headers["Content-Type"] = CLOUDEVENTS_JSON
        else:
            body = envelope.data_bytes()
            if envelope.datacontenttype or envelope.is_json:
                headers["Content-Type"] = envelope.datacontenttype or "application/json"
        if s.cloudevents == "binary":
            headers.update(binary_headers(envelope))
        client = self.client()
        # Error messages may carry a secret (auth, or credentials in the URL): scrubbed on the
        # way out. The ``with`` sits on the error paths only — a context manager per delivery
        # is measurable on the hot path.
        target = self._url or url
        try:
            got = await send_plain(client, s.method, target, headers, body, answer=answer) \
                if self.auth is None else None
            if got is None:
                got = await client.request(s.method, target, content=body, headers=headers,
                                           auth=self.auth)
            if isinstance(got, httpx.Response) and not 200 <= got.status_code < 300:
                # (the message is built only then)
                raise_for_status(got, f"{s.method} {redact_url(url)}", "colon")
            return got
        except httpx.HTTPError as exc:
            with scrubbed(self.auth, url=url):
                raise transport_error(exc, f"{s.method} {redact_url(url)}", "colon") from exc
        except DeliveryError:
            with scrubbed(self.auth, url=url):
                raise


#: Methods sent without a body (the envelope's data only fills the URL template).
_BODILESS = frozenset({"GET", "HEAD"})


def render_url(template: str, envelope: Envelope) -> str:
    """The URL ``template`` filled from ``envelope``, each value percent-encoded."""
    return render(template, envelope, "URL template", lambda text: quote(text, safe=""))


def binary_headers(envelope: Envelope) -> dict[str, str]:
    """Every attribute of the structured form as a ``ce-`` header, esb's extensions included
    (structured values — hops, attempts, headers — as compact JSON), so a binary-mode
    receiver sees what a structured-mode one does."""
    ce = envelope.to_cloudevent()
    out = {}
    for name, value in ce.items():
        if name in ("data", "data_base64", "datacontenttype"):
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        out[f"ce-{name}"] = header_safe(text)
    return out
