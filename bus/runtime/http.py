"""The daemon's one HTTP server: inbound adapters, health, metrics and the admin API."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.spec import HttpRoute
from esb.bus.broker.tls import client_context
from esb.bus.problem import internal_error, problem
from esb.bus.runtime.httpguard import HttpLimits, guarded_protocol
from esb.bus.runtime.httptransport import lean_client

if TYPE_CHECKING:
    from esb.bus.config.model import OutboundHttp

log = structlog.get_logger("esb.http")


class InboundDispatcher:
    """Sends inbound-adapter requests straight to their handler by a dict lookup; everything
    else (admin, health, metrics, 404/405) goes through Starlette.

    Starlette's middleware stack and route scan cost about 7 % of the daemon's CPU per message
    in the profile; inbound paths are static (``/in/shop``) or one trailing parameter
    (``/in/shop/{type}``), so a lookup is all they need.
    """

    def __init__(self, routes: list[HttpRoute], fallback: Any) -> None:
        self.fallback = fallback
        self.exact: dict[str, HttpRoute] = {}
        self.one_param: dict[str, tuple[str, HttpRoute]] = {}
        for r in routes:
            head, sep, last = r.path.rpartition("/")
            if "{" not in r.path:
                self.exact[r.path] = r
            elif sep and "{" not in head and last.startswith("{") and last.endswith("}") \
                    and ":" not in last:
                self.one_param[head] = (last[1:-1], r)
            # anything else is left to Starlette (see build_app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            route = self.exact.get(path)
            if route is None:
                head, _, last = path.rpartition("/")
                hit = self.one_param.get(head) if last else None
                if hit is not None:
                    scope["path_params"] = {hit[0]: last}
                    route = hit[1]
            if route is not None and scope["method"] in route.methods:
                try:
                    response = await route.handler(Request(scope, receive))
                except ClientDisconnect:
                    return  # the client went away (or was cut off as too slow): no one to answer
                except Exception:
                    response = internal_error(log, "inbound handler failed", path=path)
                await response(scope, receive, send)
                return
        await self.fallback(scope, receive, send)


def build_app(inbound: list[HttpRoute], admin: list[Route], *,
              not_ready: Callable[[], str | None],
              metrics: Callable[[], bytes]) -> InboundDispatcher:
    """The daemon's ASGI app. ``not_ready`` says why ``/readyz`` is 503 (``None``: 200), see
    :mod:`esb.bus.runtime.readiness`."""
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        reason = not_ready()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, 503)

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
        try:
            raise exc
        except Exception:
            return internal_error(log, "request failed", path=request.url.path)

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed,
                                                       500: crashed})
    return InboundDispatcher(inbound, app)


BACKLOG = 2048  # uvicorn's default


class ListenError(Exception):
    """The HTTP listen address cannot be bound (taken, not local, not permitted)."""


def bind_listener(host: str, port: int) -> socket.socket:
    """The daemon's HTTP listening socket, bound before anything else starts (once for
    every worker of ``--workers N``; SO_REUSEADDR, as uvicorn binds it).
    Raises :class:`ListenError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT/SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: Any, host: str, port: int, *, graceful: float = 30.0,
                limits: HttpLimits | None = None) -> QuietServer:
    """``graceful``: how long requests in flight may finish once a stop began (uvicorn then
    cancels them; the daemon answers them itself a second before). ``limits``: the server's
    bounds on connections, headers and slow clients (:mod:`.httpguard`)."""
    limits = limits or HttpLimits()
    # log_config=None: uvicorn's records reach the root handler of
    # esb.bus.runtime.logs (same format and redaction as every other line) instead of
    # handlers and formats of its own.
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False,
                            log_config=None, log_level="warning", loop="none",
                            http=guarded_protocol(limits),
                            timeout_graceful_shutdown=max(1, round(graceful)),
                            server_header=False,
                            # No esb endpoint speaks WebSocket: "none" also spares every start
                            # the import of uvicorn's websockets implementation.
                            ws="none",
                            # Longer than typical client pools keep idle connections, so a
                            # client rarely reuses one the server is closing at that instant.
                            timeout_keep_alive=limits.idle_timeout)
    return QuietServer(config)


def make_http_client(timeout: float = 30.0, outbound: OutboundHttp | None = None,
                     resolve: Callable[[Path], Path] = Path) -> httpx.AsyncClient:
    """The daemon's one outbound HTTP pool: httpx's API over esb's lean HTTP/1.1 transport
    (:mod:`esb.bus.runtime.httptransport`: measured ~2x less CPU per request than over
    aiohttp's pool, ~20x less than httpx's default transport), trusting ``outbound``'s CA
    bundle and presenting its client certificate. With a proxy, httpx's own transport (the
    lean one speaks no proxy protocol)."""
    context = None
    if outbound is not None and (outbound.ca_file or outbound.cert_file or not outbound.verify):
        context = client_context(**outbound.files(resolve), verify=outbound.verify)
    if outbound is not None and outbound.proxy:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        return httpx.AsyncClient(proxy=outbound.proxy, verify=context or True, limits=limits,
                                 timeout=timeout, follow_redirects=False, trust_env=False)
    return lean_client(timeout, max_connections=512, max_idle=128, ssl_context=context)
