"""The daemon's one HTTP server: inbound adapters, health, metrics and the admin API."""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
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


#: Whether the kernel spreads connections over the listening sockets of one port
#: (``SO_REUSEPORT`` on Linux; BSD and macOS accept the option but do not balance).
BALANCED_PORTS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_listener(host: str, port: int, *, for_workers: bool = False) -> socket.socket:
    """The daemon's HTTP listening socket, bound before anything else starts
    (SO_REUSEADDR, as uvicorn binds it). Raises :class:`ListenError`.

    ``for_workers``: the supervisor's socket of ``--workers N``. Where the kernel balances
    ports (:data:`BALANCED_PORTS`) it only holds the address — bound with SO_REUSEPORT, not
    listening — and each worker listens on a socket of its own on it (:func:`worker_listener`).
    The address must be free first: a socket without SO_REUSEPORT is bound to it and let go,
    so a second daemon on the same port fails here instead of sharing its traffic. (Another
    program of the same user that binds with SO_REUSEPORT can still join, as with any such
    server; two supervisors started within the same instant could both pass the probe.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if for_workers and BALANCED_PORTS:
            sock.bind((host, port))  # the probe: taken by anyone, with SO_REUSEPORT or not?
            bound = sock.getsockname()
            sock.close()
            sock = _holder(family, bound)
        else:
            sock.bind((host, port))
            sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _holder(family: int, address: Any) -> socket.socket:
    """The supervisor's socket on ``address`` (free, as the probe found): SO_REUSEPORT alone
    where it can be — Linux lets a socket with SO_REUSEADDR share an address only with others
    that have it and do not listen, so a lone daemon is kept out too. Connections in TIME_WAIT
    left by a listener without SO_REUSEPORT (a lone daemon's, another server's) refuse that
    for up to a minute: then SO_REUSEADDR as well, as any server binds."""
    try:
        return _port_socket(family, address, reuse_addr=False)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
    return _port_socket(family, address, reuse_addr=True)


def _port_socket(family: int, address: Any, *, reuse_addr: bool,
                 listen: bool = False) -> socket.socket:
    """A socket bound to ``address`` with SO_REUSEPORT (and SO_REUSEADDR if asked),
    listening if asked."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)  # (port 0 for the supervisor's: the port the probe was given)
        if listen:
            sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def worker_listener(shared: socket.socket) -> socket.socket:
    """A worker's listening socket, from the supervisor's (:func:`bind_listener`
    ``for_workers``): a socket of its own on the same address with SO_REUSEPORT, so the
    kernel hands each new connection to one worker's socket by a hash of its addresses, or
    ``shared`` itself where that socket listens (every worker accepts from it).

    Why: libuv accepts every waiting connection at each wake-up, so on one shared socket a
    client that opens its keep-alive pool in a burst (a load balancer, a partner's HTTP pool,
    the bench's load generator) lands almost whole on one worker for the connections'
    lifetime — measured with 64 connections and two workers: 94 % of the requests on one,
    its core saturated while the other idled. The price: connections waiting in a worker's
    backlog when it exits are reset (not left to the others), and while no worker runs new
    connections are refused rather than queued (see docs/architecture.md)."""
    if shared.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return shared
    address = shared.getsockname()
    try:
        sock = _port_socket(shared.family, address, reuse_addr=True, listen=True)
    except OSError as exc:
        raise ListenError(f"worker cannot listen on {address[0]}:{address[1]}: "
                          f"{exc.strerror or exc}") from exc
    shared.close()  # the supervisor keeps the address; this process needs no copy
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
