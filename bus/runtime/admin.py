"""The admin API (``/admin/...``): bearer token, loopback-only unless configured otherwise.

The CLI is a thin client of these endpoints; every read answers JSON.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from esb.bus.apidocs.admin import admin_document
from esb.bus.console.session import (
    COOKIE,
    CSRF_HEADER,
    SAFE_METHODS,
    Sessions,
    token_matches,
)
from esb.bus.envelope import Envelope
from esb.bus.errors import BusError
from esb.bus.httpbody import BodyTooLarge, EncodingRefused, read_body
from esb.bus.payload import PayloadError, decode
from esb.bus.problem import json_response, not_taken, problem
from esb.bus.runtime.admin_deadletters import deadletter_admin_routes
from esb.bus.runtime.admin_ops import Endpoint, ops_admin_routes
from esb.bus.runtime.admin_routes import route_admin_routes

if TYPE_CHECKING:
    from esb.bus.runtime.daemon import Daemon


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_only(request: Request) -> Response | None:
    """The 403 answer to a client outside the admin binding (see ``admin.remote``)."""
    if is_loopback(request):
        return None
    return problem(403, "Forbidden", "the admin API and the console only answer loopback "
                   "clients (set admin.remote: true to change that)")


def _unauthorized() -> Response:
    return problem(401, "Unauthorized", "send 'Authorization: Bearer <admin token>' (or log "
                   "in to the console)", headers={"WWW-Authenticate": "Bearer"})


class AdminApi:
    """The admin endpoints, each behind :meth:`guard`: the bearer token, or a console session
    cookie (plus its CSRF token on anything but a read)."""

    def __init__(self, daemon: Daemon, token: str, remote: bool, sessions: Sessions) -> None:
        self.daemon = daemon
        self.token = token
        self.remote = remote
        self.max_body = daemon.config.admin.max_body
        self.sessions = sessions

    def refusal(self, request: Request) -> Response | None:
        """Why ``request`` may not use the admin API (a problem response), or None."""
        if not self.remote and (refused := loopback_only(request)) is not None:
            return refused
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not token_matches(given, self.token):
                return _unauthorized()
            return None
        session = self.sessions.check(request.cookies.get(COOKIE))
        if session is None:
            return _unauthorized()
        if request.method not in SAFE_METHODS and not self.sessions.csrf_ok(
                session, request.headers.get(CSRF_HEADER)):
            return problem(403, "CSRF token missing or wrong",
                           "a console action must carry the session's X-CSRF-Token header")
        return None

    def guard(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            refused = self.refusal(request)
            if refused is not None:
                return refused
            if request.method != "GET":
                try:  # into Starlette's own cache of the body: request.body() returns it
                    request._body = await read_body(request, self.max_body)
                except BodyTooLarge:
                    return problem(413, "Body too large",
                                   f"admin requests take at most {self.max_body} bytes "
                                   "(admin.max_body)")
                except EncodingRefused as exc:
                    return problem(exc.status, exc.title, str(exc))
            return await endpoint(request)

        return guarded

    def routes(self) -> list[Route]:
        d = self.daemon
        return [
            Route("/admin/status", self.guard(self.status), methods=["GET"]),
            Route("/admin/send", self.guard(self.send), methods=["POST"]),
            Route("/admin/routes", self.guard(self.routes_info), methods=["GET"]),
            Route("/admin/openapi.json", self.guard(self.openapi), methods=["GET"]),
            *route_admin_routes(d.deployer, self.guard, d.route_tester),
            *deadletter_admin_routes(d.deadletters, self.guard),
            *ops_admin_routes(d.trace, d.presence, self.guard, d.stats, d.plugins),
        ]

    async def openapi(self, request: Request) -> Response:
        return json_response(admin_document(server=str(request.base_url).rstrip("/")))

    async def status(self, request: Request) -> Response:
        return json_response(await self.daemon.status())

    async def routes_info(self, request: Request) -> Response:
        router = self.daemon.router.current
        return json_response({"version": router.version, "digest": router.digest,
                              "routes": [{"name": r.name, "priority": r.priority,
                                          "exclusive": r.exclusive,
                                          "to": [leg.destination for leg in r.legs]}
                                         for r in router.routes]})

    async def send(self, request: Request) -> Response:
        q = request.query_params
        etype, source = q.get("type"), q.get("source")
        if not etype or not source:
            return problem(400, "Missing parameters", "send needs ?type=T&source=S")
        body = await request.body()
        ctype = request.headers.get("content-type", "application/json")
        try:
            data = decode(body, ctype)
        except PayloadError as exc:
            return problem(400, exc.title, exc.detail)
        endpoint = source if source in self.daemon.config.sources else "admin"
        try:
            env = Envelope(source=source, type=etype, datacontenttype=ctype, data=data)
        except ValidationError as exc:  # e.g. control characters in the type or source
            return problem(400, "Invalid message",
                           "; ".join(str(e["msg"]) for e in exc.errors()))
        try:
            accepted = await self.daemon.ingress.accept(env, endpoint)
        except BusError as exc:
            return not_taken(exc, str(exc))
        return json_response({"id": accepted.id, "destinations": list(accepted.destinations)},
                             202)
