"""A zeep transport over the runtime's shared ``httpx.AsyncClient``.

zeep's own ``AsyncTransport`` replaces the client's headers and closes it; this one borrows
the pool, sets the per-request timeout, and loads WSDL/XSD documents from local files, or over
HTTP only when the configuration allows it and the outbound allow-list has their host.
Documents fetched over HTTP are kept in a :class:`~esb.adapters.soap.wsdlcache.WsdlCache` and
loaded from there when their server is down.

Each operation call carries the envelope's key as ``Idempotency-Key`` (set for the call by
:func:`call_headers`: zeep builds the request, so the header travels in a context variable).
The destination's ``auth`` (an :class:`httpx.Auth`) and ``headers`` go with every operation
call, and with a WSDL/XSD fetch only when the document comes from the service's own origin
(``credentials_origin``: scheme, host and port), so a schema imported from a third-party host
never sees the service's credentials.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import structlog
from lxml import etree
from zeep.transports import Transport
from zeep.wsdl.utils import etree_to_string

from esb.adapters.auth.oauth2 import redact_url
from esb.adapters.http import check_host, send_plain
from esb.adapters.soap.wsdlcache import WsdlCache
from esb.bus.errors import DeliveryError
from esb.bus.reply import Reply

log = structlog.get_logger("esb.soap.outbound")


class NetworkWsdlForbidden(Exception):
    """A WSDL or XSD was to be fetched over HTTP while ``allow_network_wsdl`` is off."""


class WsdlUnavailable(Exception):
    """A WSDL or XSD URL could not be fetched and no cached copy of it exists."""


class HttpxTransport(Transport):
    """Operations go out through ``client()``; the caller reads the raw ``httpx.Response``
    (the zeep client runs with ``raw_response=True``)."""

    def __init__(self, client: Callable[[], httpx.AsyncClient], timeout: float,
                 allow_network: bool, load_timeout: float = 30.0,
                 cache: WsdlCache | None = None, *, auth: httpx.Auth | None = None,
                 headers: Mapping[str, str] | None = None,
                 credentials_origin: str | None = None,
                 allowed_hosts: tuple[str, ...] = ()) -> None:
        # Transport.__init__ would open a requests session we never use
        self.cache = None
        self.load_timeout = load_timeout
        self.operation_timeout = timeout
        self.logger = logging.getLogger(__name__)
        self._close_session = False
        self._client = client
        self._allow_network = allow_network
        self._wsdl_cache = cache
        self._auth = auth
        self._headers = dict(headers or {})
        self._origin = origin(credentials_origin) if credentials_origin else None
        self._allowed_hosts = allowed_hosts
        self._urls: dict[str, httpx.URL] = {}
        self._timeout = httpx.Timeout(timeout)

    def load(self, url: str) -> bytes:
        """A WSDL/XSD document (called by zeep while it builds the client, off the loop)."""
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            if not self._allow_network:
                raise NetworkWsdlForbidden(f"{redact_url(url)}: loading over the network is off "
                                           "(set allow_network_wsdl: true)")
            check_host(url, self._allowed_hosts, f"wsdl: {redact_url(url)}")
            return self._fetch(url)
        path = url2pathname(parsed.path) if parsed.scheme == "file" else url
        return Path(path).expanduser().read_bytes()

    def _fetch(self, url: str) -> bytes:
        """``url`` over HTTP, cached; the cached copy when the fetch fails."""
        own = self._origin is not None and origin(url) == self._origin
        try:
            with httpx.Client(timeout=self.load_timeout) as client:
                response = client.get(url, headers=self._headers if own else None,
                                      auth=self._auth if own else None)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            reason = (f"HTTP {exc.response.status_code}"
                      if isinstance(exc, httpx.HTTPStatusError)
                      else f"{type(exc).__name__}: {exc}")
            return self._cached(url, reason, exc)
        except DeliveryError as exc:  # the OAuth 2.0 token endpoint failed (message is safe)
            return self._cached(url, str(exc), exc)
        if self._wsdl_cache is not None:
            self._wsdl_cache.put(url, response.content)
        return response.content

    def _cached(self, url: str, reason: str, exc: Exception) -> bytes:
        found = self._wsdl_cache.get(url) if self._wsdl_cache is not None else None
        if found is None:
            where = f" in {self._wsdl_cache.folder}" if self._wsdl_cache is not None else ""
            raise WsdlUnavailable(f"{redact_url(url)} cannot be fetched ({reason}) and no "
                                  f"cached copy exists{where}") from exc
        content, stored = found
        log.warning("wsdl unreachable, using the cached copy", url=redact_url(url),
                    error=reason, cached_at=stored.isoformat())
        return content

    async def post(self, address: str, message: bytes | str,  # type: ignore[override]
                   headers: dict[str, str]) -> httpx.Response:
        return await self._client().post(self._url(address), content=message,
                                         headers=self._sent(headers), auth=self._auth,
                                         timeout=self._timeout)

    async def post_xml(self, address: str, envelope: etree._Element,  # type: ignore[override]
                       headers: dict[str, str]) -> httpx.Response:
        return await self.post(address, etree_to_string(envelope), headers)

    async def post_answer(self, address: str, message: bytes, headers: dict[str, str]
                          ) -> httpx.Response | Reply:
        """:meth:`post` on the client's short path when it has one for the call (no
        ``auth``; see :func:`esb.adapters.http.send_plain`): a 2xx answer as a
        :class:`~esb.bus.reply.Reply`, any other as the :class:`httpx.Response`."""
        if self._auth is None:
            got = await send_plain(self._client(), "POST", self._url(address),
                                   self._sent(headers), message, answer=True,
                                   timeout=self._timeout)
            if got is not None:
                assert not isinstance(got, int)  # (only without ``answer``)
                return got
        return await self.post(address, message, headers)

    def _sent(self, headers: dict[str, str]) -> dict[str, str]:
        """The call's headers: the configured ones and this call's (:func:`call_headers`),
        the binding's ``headers`` (Content-Type, SOAPAction) winning over both, any case."""
        per_call = _CALL_HEADERS.get()
        if not (self._headers or per_call):
            return headers
        given = {name.lower() for name in headers}
        sent = {name: value for extra in (self._headers, per_call)
                for name, value in extra.items() if name.lower() not in given}
        sent.update(headers)
        return sent

    def _url(self, address: str) -> httpx.URL:
        url = self._urls.get(address)
        if url is None:  # parsed once per address: httpx parses a string on every call
            url = self._urls[address] = httpx.URL(address)
        return url


def origin(url: str) -> tuple[str, str, int | None] | None:
    """``url``'s scheme, host and port (the scheme's default when none is given)."""
    try:
        parts = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.host.lower(), parts.port or default


_CALL_HEADERS: ContextVar[Mapping[str, str]] = ContextVar("esb_soap_call_headers",
                                                          default=MappingProxyType({}))


@contextlib.contextmanager
def call_headers(headers: dict[str, str]) -> Iterator[None]:
    """HTTP headers for the operation calls made inside the block (this task only)."""
    token = _CALL_HEADERS.set(headers)
    try:
        yield
    finally:
        _CALL_HEADERS.reset(token)
