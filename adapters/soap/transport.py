"""A zeep transport over the runtime's shared ``httpx.AsyncClient``.

zeep's own ``AsyncTransport`` replaces the client's headers and closes it; this one borrows
the pool, sets the per-request timeout, and loads WSDL/XSD documents from local files, or over
HTTP only when the configuration allows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
from lxml import etree
from zeep.transports import Transport
from zeep.wsdl.utils import etree_to_string


class NetworkWsdlForbidden(Exception):
    """A WSDL or XSD was to be fetched over HTTP while ``allow_network_wsdl`` is off."""


class HttpxTransport(Transport):
    """Operations go out through ``client()``; the caller reads the raw ``httpx.Response``
    (the zeep client runs with ``raw_response=True``)."""

    def __init__(self, client: Callable[[], httpx.AsyncClient], timeout: float,
                 allow_network: bool, load_timeout: float = 30.0) -> None:
        # Transport.__init__ would open a requests session we never use
        self.cache = None
        self.load_timeout = load_timeout
        self.operation_timeout = timeout
        self.logger = logging.getLogger(__name__)
        self._close_session = False
        self._client = client
        self._allow_network = allow_network

    def load(self, url: str) -> bytes:
        """A WSDL/XSD document (called by zeep while it builds the client, off the loop)."""
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            if not self._allow_network:
                raise NetworkWsdlForbidden(f"{url}: loading over the network is off "
                                           "(set allow_network_wsdl: true)")
            with httpx.Client(timeout=self.load_timeout) as client:
                response = client.get(url)
                response.raise_for_status()
                return response.content
        path = url2pathname(parsed.path) if parsed.scheme == "file" else url
        return Path(path).expanduser().read_bytes()

    async def post(self, address: str, message: bytes | str,  # type: ignore[override]
                   headers: dict[str, str]) -> httpx.Response:
        return await self._client().post(address, content=message, headers=headers,
                                         timeout=self.operation_timeout)

    async def post_xml(self, address: str, envelope: etree._Element,  # type: ignore[override]
                       headers: dict[str, str]) -> httpx.Response:
        return await self.post(address, etree_to_string(envelope), headers)
