"""Admin endpoints for the dead-letter and unroutable queues.

``POST .../replay`` streams its progress as JSON lines (``{"done": n, "total": m}``) and ends
with the result line (``{"replayed": n, "left": m}`` or ``{"error": ...}``), so a CLI can show
progress for replays of thousands of messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from esb.adapters.problem import problem
from esb.bus.errors import EsbError
from esb.bus.runtime.deadletters import QUEUES, DeadLetters, summary

Endpoint = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Endpoint], Endpoint]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def deadletter_admin_routes(dl: DeadLetters, guard: Guard) -> list[Route]:
    async def listing(request: Request) -> Response:
        which = request.path_params["which"]
        try:
            limit = int(request.query_params.get("limit", "100"))
            envs = await dl.list(which, max(1, min(limit, 100_000)))
        except (ValueError, EsbError) as exc:
            return problem(400, "Bad request", str(exc))
        return _json({"queue": which, "items": [summary(e) for e in envs]})

    async def show(request: Request) -> Response:
        which, eid = request.path_params["which"], request.path_params["id"]
        try:
            env = await dl.show(which, eid)
        except EsbError as exc:
            return problem(400, "Bad request", str(exc))
        if env is None:
            return problem(404, "Not found", f"no envelope {eid} in {which}")
        return _json(env.to_cloudevent())

    async def purge(request: Request) -> Response:
        try:
            return _json({"purged": await dl.purge(request.path_params["which"])})
        except EsbError as exc:
            return problem(400, "Bad request", str(exc))

    async def replay(request: Request) -> Response:
        which = request.path_params["which"]
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as exc:
            return problem(400, "Malformed JSON", str(exc))
        ids = body.get("ids")
        if not ids and not body.get("all"):
            return problem(400, "Nothing to replay", "name envelope ids, or set all: true")
        lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def run() -> None:
            try:
                result = await dl.replay(which, ids or None, body.get("destination"),
                                         progress=lambda d, t: lines.put_nowait(
                                             {"done": d, "total": t}))
                lines.put_nowait({"replayed": result.replayed, "left": result.left})
            except Exception as exc:  # reported in the stream: the status line is sent
                lines.put_nowait({"error": str(exc)})
            finally:
                lines.put_nowait(None)

        task = asyncio.create_task(run())

        async def stream() -> AsyncIterator[bytes]:
            while (line := await lines.get()) is not None:
                yield orjson.dumps(line) + b"\n"
            await task

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    routes = []
    for which in QUEUES:
        def bound(endpoint: Endpoint, which: str = which) -> Endpoint:
            async def call(request: Request) -> Response:
                request.path_params["which"] = which
                return await endpoint(request)

            return guard(call)

        base = f"/admin/{which}"
        routes += [Route(base, bound(listing), methods=["GET"]),
                   Route(base + "/replay", bound(replay), methods=["POST"]),
                   Route(base + "/purge", bound(purge), methods=["POST"]),
                   Route(base + "/{id:str}", bound(show), methods=["GET"])]
    return routes
