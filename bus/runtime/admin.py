"""The admin API (``/admin/...``): bearer token, loopback-only unless configured otherwise.

The CLI is a thin client of these endpoints; every read answers JSON.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from esb.bus.envelope import Envelope
from esb.bus.errors import BusError
from esb.bus.payload import PayloadError, decode
from esb.bus.problem import json_response, not_taken, problem
from esb.bus.runtime.admin_deadletters import deadletter_admin_routes
from esb.bus.runtime.admin_ops import ops_admin_routes
from esb.bus.runtime.admin_routes import route_admin_routes

if TYPE_CHECKING:
    from esb.bus.runtime.daemon import Daemon

Endpoint = Callable[[Request], Awaitable[Response]]



def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminApi:
    def __init__(self, daemon: Daemon, token: str, remote: bool) -> None:
        self.daemon = daemon
        self.token = token
        self.remote = remote

    def guard(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            if not self.remote and not _loopback(request):
                return problem(403, "Forbidden", "the admin API only answers loopback clients "
                               "(set admin.remote: true to change that)")
            auth = request.headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(),
                                                                     self.token.encode()):
                return problem(401, "Unauthorized", "send 'Authorization: Bearer <admin token>'",
                               headers={"WWW-Authenticate": "Bearer"})
            return await endpoint(request)

        return guarded

    def routes(self) -> list[Route]:
        return [
            Route("/admin/status", self.guard(self.status), methods=["GET"]),
            Route("/admin/send", self.guard(self.send), methods=["POST"]),
            Route("/admin/routes", self.guard(self.routes_info), methods=["GET"]),
            *route_admin_routes(self.daemon.deployer, self.guard),
            *deadletter_admin_routes(self.daemon.deadletters, self.guard),
            *ops_admin_routes(self.daemon.trace, self.daemon.presence, self.guard),
        ]

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
        env = Envelope(source=source, type=etype, datacontenttype=ctype, data=data)
        try:
            accepted = await self.daemon.ingress.accept(env, endpoint)
        except BusError as exc:
            return not_taken(exc, str(exc))
        return json_response({"id": accepted.id, "destinations": list(accepted.destinations)},
                             202)
