"""Ready-made peer hooks for adapters that speak HTTP, on top of the two contracts.

:class:`HttpOutboundContract` runs a recording HTTP destination (200, 503 or 400) and points the
side at it through :meth:`HttpOutboundContract.peer_settings`; :class:`HttpInboundContract`
sends one request per input to the side's routes, served as the daemon serves them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from esb.adapters.testing.context import http_client
from esb.adapters.testing.inbound_contract import InboundContract
from esb.adapters.testing.outbound_contract import (
    Delivered,
    FailureKind,
    OutboundContract,
    OutboundPeer,
)
from esb.adapters.testing.serve import serve_asgi

_STATUS = {"accept": 200, "transient": 503, "permanent": 400}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class HttpOutboundContract(OutboundContract):
    """:class:`OutboundContract` against a recording HTTP peer on 127.0.0.1."""

    #: The request header carrying the envelope's idempotency key.
    idempotency_header: ClassVar[str] = "Idempotency-Key"

    def peer_settings(self, url: str) -> dict[str, Any]:
        """Hook: settings that send to the peer at ``url`` (its base URL). Default:
        ``{"url": url + "/kit"}``."""
        return {"url": url + "/kit"}

    @contextlib.asynccontextmanager
    async def _peer(self, behaviour: str) -> AsyncIterator[OutboundPeer]:
        seen: list[Delivered] = []
        status = _STATUS[behaviour]

        async def handle(request: Request) -> Response:
            body = await request.body()
            if status < 300:
                seen.append(Delivered(request.headers.get(self.idempotency_header), body))
            headers = {"Retry-After": "1"} if status == 503 else None
            return Response(b'{"status": "kit"}', status_code=status,
                            media_type="application/json", headers=headers)

        app = Starlette(routes=[Route("/{path:path}", handle, methods=_METHODS)])
        async with serve_asgi(app) as url:
            yield OutboundPeer(settings=self.peer_settings(url), delivered=lambda: list(seen))

    def accepting_peer(self) -> contextlib.AbstractAsyncContextManager[OutboundPeer]:
        """An HTTP peer answering 200 to everything."""
        return self._peer("accept")

    def failing_peer(self, kind: FailureKind
                     ) -> contextlib.AbstractAsyncContextManager[OutboundPeer | None]:
        """An HTTP peer answering 503 (transient) or 400 (permanent)."""
        return self._peer(kind)


class HttpInboundContract(InboundContract):
    """:class:`InboundContract` whose peer sends one HTTP request per input; a 2xx answer is
    the acknowledgement, anything else tells it to retry."""

    http_method: ClassVar[str] = "POST"
    #: Path of the request, below the served routes (e.g. the ``path`` setting).
    http_path: ClassVar[str]
    http_headers: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}
    http_body: ClassVar[bytes] = b'{"id": "A-1", "qty": 2}'

    response: httpx.Response | None = None

    async def offer(self) -> None:
        """Send the request; keep the answer in ``self.response``."""
        assert self.base_url, "the inbound side serves no HTTP routes"
        self.response = None
        async with http_client() as client:
            self.response = await client.request(self.http_method,
                                                 self.base_url + self.http_path,
                                                 content=self.http_body,
                                                 headers=self.http_headers)

    async def acknowledged(self) -> bool:
        """A 2xx answer arrived."""
        return self.response is not None and 200 <= self.response.status_code < 300
