"""The daemon's one HTTP server: inbound adapters, health, metrics and the admin API."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import uvicorn
from httpx_aiohttp import AiohttpTransport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.problem import problem
from esb.adapters.spec import HttpRoute


def build_app(inbound: list[HttpRoute], admin: list[Route], *, ready: Callable[[], bool],
              metrics: Callable[[], bytes]) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": "bus not connected"}, 503)

    async def render_metrics(request: Request) -> Response:
        return Response(metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [Route("/healthz", healthz, methods=["GET"]),
              Route("/readyz", readyz, methods=["GET"]),
              Route("/metrics", render_metrics, methods=["GET"]),
              *admin,
              *(Route(r.path, r.handler, methods=list(r.methods)) for r in inbound)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return problem(404, "Not found", f"no source or endpoint at {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return problem(405, "Method not allowed",
                       f"{request.method} is not accepted at {request.url.path}")

    async def crashed(request: Request, exc: Exception) -> Response:
        return problem(500, "Internal error", "the request failed inside esb; see its log")

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed,
                                                        500: crashed})


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT/SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: Any, host: str, port: int) -> QuietServer:
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False,
                            log_level="warning", loop="none", http="httptools",
                            timeout_graceful_shutdown=30, server_header=False,
                            # Longer than typical client pools keep idle connections, so a
                            # client rarely reuses one the server is closing at that instant.
                            timeout_keep_alive=75)
    return QuietServer(config)


def make_http_client(timeout: float = 30.0) -> httpx.AsyncClient:
    """The daemon's one outbound HTTP pool: httpx's API over aiohttp's connection pool
    (measured ~5x less CPU per request than httpx's default transport)."""
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits, trust_env=False),
                             timeout=timeout, follow_redirects=False, trust_env=False)
