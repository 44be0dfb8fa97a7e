"""``/openapi.json`` (the inbound sources) and ``/docs`` (Swagger UI over both documents).

Both are public like the sources they describe: a partner team fetches the document it codes
against without the admin token. The admin API's document stays at ``/admin/openapi.json``
behind the admin token (the docs page shows it to a browser logged in to the console).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")

_DOCS_PAGE = """<!doctype html><html lang=en><head><meta charset=utf-8>
<title>esb API docs</title>
<link rel="stylesheet" href="/console/static/vendor/swagger-ui/swagger-ui.css">
<link rel="stylesheet" href="/console/static/docs.css">
</head><body>
<div id="swagger-ui"></div>
<script src="/console/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/console/static/vendor/swagger-ui/swagger-ui-standalone-preset.js"></script>
<script src="/console/static/docs.js"></script>
</body></html>"""


class InboundDocument:
    """The inbound document for the route set in force, rebuilt when its version changes."""

    def __init__(self, build: Callable[[int, str | None], dict[str, Any]],
                 version: Callable[[], int]) -> None:
        self.build = build
        self.version = version
        self._cached: tuple[int, str | None, bytes] | None = None

    def render(self, server: str | None) -> bytes:
        v = self.version()
        cached = self._cached
        if cached is None or cached[0] != v or cached[1] != server:
            cached = self._cached = (v, server, orjson.dumps(self.build(v, server)))
        return cached[2]


def apidocs_routes(inbound: InboundDocument) -> list[Route]:
    async def openapi(request: Request) -> Response:
        return Response(inbound.render(str(request.base_url).rstrip("/")),
                        media_type="application/json",
                        headers={"Access-Control-Allow-Origin": "*"})

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE, headers={"Content-Security-Policy": DOCS_CSP,
                                                 "X-Content-Type-Options": "nosniff",
                                                 "Referrer-Policy": "no-referrer"})

    return [Route("/openapi.json", openapi, methods=["GET"]),
            Route("/docs", docs, methods=["GET"])]
