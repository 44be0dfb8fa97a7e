"""A zeep transport over the runtime's shared ``httpx.AsyncClient``.

zeep's own ``AsyncTransport`` replaces the client's headers and closes it; this one borrows
the pool, sets the per-request timeout, and loads WSDL/XSD documents from local files, or over
HTTP only when the configuration allows it. Documents fetched over HTTP are kept in a
:class:`~esb.adapters.soap.wsdlcache.WsdlCache` and loaded from there when their server is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import structlog
from lxml import etree
from zeep.transports import Transport
from zeep.wsdl.utils import etree_to_string

from esb.adapters.auth.oauth2 import redact_url
from esb.adapters.soap.wsdlcache import WsdlCache

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
                 cache: WsdlCache | None = None) -> None:
        # Transport.__init__ would open a requests session we never use
        self.cache = None
        self.load_timeout = load_timeout
        self.operation_timeout = timeout
        self.logger = logging.getLogger(__name__)
        self._close_session = False
        self._client = client
        self._allow_network = allow_network
        self._wsdl_cache = cache

    def load(self, url: str) -> bytes:
        """A WSDL/XSD document (called by zeep while it builds the client, off the loop)."""
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            if not self._allow_network:
                raise NetworkWsdlForbidden(f"{redact_url(url)}: loading over the network is off "
                                           "(set allow_network_wsdl: true)")
            return self._fetch(url)
        path = url2pathname(parsed.path) if parsed.scheme == "file" else url
        return Path(path).expanduser().read_bytes()

    def _fetch(self, url: str) -> bytes:
        """``url`` over HTTP, cached; the cached copy when the fetch fails."""
        try:
            with httpx.Client(timeout=self.load_timeout) as client:
                response = client.get(url)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            return self._cached(url, exc)
        if self._wsdl_cache is not None:
            self._wsdl_cache.put(url, response.content)
        return response.content

    def _cached(self, url: str, exc: httpx.HTTPError) -> bytes:
        reason = (f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError)
                  else f"{type(exc).__name__}: {exc}")
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
        return await self._client().post(address, content=message, headers=headers,
                                         timeout=self.operation_timeout)

    async def post_xml(self, address: str, envelope: etree._Element,  # type: ignore[override]
                       headers: dict[str, str]) -> httpx.Response:
        return await self.post(address, etree_to_string(envelope), headers)
