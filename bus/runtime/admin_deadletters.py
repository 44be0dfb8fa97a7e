"""Admin endpoints for the dead-letter and unroutable queues.

``GET /admin/{dlq,unroutable}`` lists (``limit``, default 100), optionally filtered by
``destination``, ``error`` (a case-insensitive substring) and ``since`` (a duration: last
handled within it).

``POST .../replay`` streams its progress as JSON lines (``{"scanned": n, "total": m}``: how
far the pass is through the queue, whose depth was ``m`` when it began, at most one line per
percent) and ends with the result line (``{"replayed": n, "failed": f, "left": m, "results":
[{"id", "outcome", "destinations", "error"?, "status"?}...]}`` or ``{"error": ...}``; with
``"wait": seconds`` the queued envelopes are followed that long to report their delivery),
so a CLI can show progress for replays of thousands of messages. A request naming ids that are
not in the queue, or an unknown destination, is refused before anything is replayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from esb.bus.envelope import bookkeeping
from esb.bus.errors import EsbError
from esb.bus.problem import json_object, json_response, problem
from esb.bus.runtime.admin_ops import Endpoint, Guard, lookback
from esb.bus.runtime.deadletters import QUEUES, DeadLetters, summary
from esb.bus.runtime.trace import AmbiguousRef

#: A replay by id first checks that its ids are in the queue when the queue holds at most
#: this many (reading them takes seconds); a deeper queue is replayed without the check.
CHECK_UP_TO = 10_000
#: How many envelopes a filtered listing reads to find its matches.
FILTER_SCAN = 10_000


class _ProgressLines:
    """The bus's progress callback, turned into stream lines: one per percent of the queue at
    most (a replay of 100,000 messages sends about 100 lines, not 100,000)."""

    def __init__(self, out: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.out = out
        self.sent = 0

    def __call__(self, scanned: int, total: int) -> None:
        if scanned == total or scanned - self.sent >= max(1, total // 100):
            self.sent = scanned
            self.out.put_nowait({"scanned": scanned, "total": total})


async def _refusal(dl: DeadLetters, which: str, ids: Any,
                   destination: Any) -> Response | None:
    """Why this replay request cannot start (as a problem response), or None."""
    if ids is not None and not (isinstance(ids, list)
                                and all(isinstance(i, str) for i in ids)):
        return problem(400, "Bad request", "ids must be a list of envelope ids")
    if destination is not None and destination not in dl.destinations:
        known = ", ".join(sorted(dl.destinations)) or "none"
        return problem(400, "Unknown destination",
                       f"no destination {destination!r} (configured: {known})")
    if not ids:
        return None
    missing = await _missing(dl, which, ids, destination)
    if missing:
        where = f" at {destination}" if destination else ""
        return problem(404, "Not found", f"not in the {which}{where}: {', '.join(missing)}; "
                                         "nothing was replayed")
    return None


async def _missing(dl: DeadLetters, which: str, ids: list[str],
                   destination: str | None) -> list[str]:
    """The ids (in the order asked) with no envelope in the queue (failed at ``destination``,
    when given). A queue deeper than :data:`CHECK_UP_TO` is not checked (reading it first
    would hold the replay up); its replay reports how many it found."""
    depth = (await dl.bus.depths()).get(QUEUES[which], 0)
    if depth > CHECK_UP_TO:
        return []  # reading that many first would delay the replay for minutes
    envs = await dl.list(which, CHECK_UP_TO + 1)
    if len(envs) > CHECK_UP_TO:
        return []
    present = {e.id for e in envs if destination is None or e.esbdestination == destination}
    return [i for i in dict.fromkeys(ids) if i not in present]


def _filter(destination: str | None, error: str | None, since: str | None
            ) -> Callable[[dict[str, Any]], bool] | None:
    """The listing filter of the query parameters (None: no filter); ValueError on a bad
    ``since``."""
    if not destination and not error and not since:
        return None
    cutoff = datetime.now(UTC) - lookback(since) if since else None
    needle = error.lower() if error else None

    def keep(item: dict[str, Any]) -> bool:
        if destination and item.get("destination") != destination:
            return False
        if needle is not None and needle not in (item.get("error") or "").lower():
            return False
        if cutoff is not None:
            try:
                return datetime.fromisoformat(item["at"]) >= cutoff
            except (KeyError, TypeError, ValueError):
                return False
        return True

    return keep


def deadletter_admin_routes(dl: DeadLetters, guard: Guard) -> list[Route]:
    async def listing(request: Request) -> Response:
        which, q = request.path_params["which"], request.query_params
        try:
            limit = max(1, min(int(q.get("limit", "100")), 100_000))
            keep = _filter(q.get("destination"), q.get("error"), q.get("since"))
        except ValueError as exc:
            return problem(400, "Bad request", str(exc))
        # A filtered listing reads further into the queue to find ``limit`` matches.
        envs = await dl.list(which, limit if keep is None else max(limit, FILTER_SCAN))
        items = [summary(e) for e in envs]
        if keep is not None:
            items = [i for i in items if keep(i)][:limit]
        return json_response({"queue": which, "items": items})

    async def show(request: Request) -> Response:
        which, eid = request.path_params["which"], request.path_params["id"]
        env = await dl.show(which, eid)
        if env is None:
            return problem(404, "Not found", f"no envelope {eid} in {which}")
        # the CloudEvent, its bookkeeping decoded for people and scripts (not JSON text)
        return json_response(bookkeeping(env.to_cloudevent()))

    async def purge(request: Request) -> Response:
        return json_response({"purged": await dl.purge(request.path_params["which"])})

    async def replay(request: Request) -> Response:
        which = request.path_params["which"]
        body = await json_object(request, empty={})
        if isinstance(body, Response):
            return body
        ids, destination = body.get("ids"), body.get("destination")
        follow = body.get("wait", 0)
        if not isinstance(follow, int | float) or isinstance(follow, bool) \
                or not 0 <= follow <= 300:
            return problem(400, "Bad request", '"wait" is a number of seconds (0 to 300)')
        if not ids and not body.get("all"):
            return problem(400, "Nothing to replay", "name envelope ids, or set all: true")
        refused = await _refusal(dl, which, ids, destination)
        if refused is not None:
            return refused
        lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def run() -> None:
            try:
                result = await dl.replay(which, ids or None, destination,
                                         progress=_ProgressLines(lines), follow=follow)
                lines.put_nowait({"replayed": result.replayed, "failed": result.failed,
                                  "left": result.left,
                                  "results": [o.to_dict() for o in result.outcomes]})
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
                try:
                    return await endpoint(request)
                except AmbiguousRef as exc:  # an id prefix or key naming several envelopes
                    return problem(409, "Ambiguous envelope reference", str(exc), ids=exc.ids)
                except EsbError as exc:  # from the dead-letter tools or the bus, on any endpoint
                    return problem(400, "Bad request", str(exc))

            return guard(call)

        base = f"/admin/{which}"
        routes += [Route(base, bound(listing), methods=["GET"]),
                   Route(base + "/replay", bound(replay), methods=["POST"]),
                   Route(base + "/purge", bound(purge), methods=["POST"]),
                   Route(base + "/{id:path}", bound(show), methods=["GET"])]
    return routes
