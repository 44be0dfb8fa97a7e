"""Admin API endpoints for operating the bus: message trace and live instances.

* ``GET /admin/trace/{id}?since=1h`` → ``{"id", "since", "events": [TraceEvent...]}``, oldest
  first, from every instance; 404 problem+json when nothing was recorded for that id in the
  window; 400 on a bad ``since``; 503 when the trace store cannot be read; 504 when reading the
  window takes too long.
* ``GET /admin/instances`` → a JSON list, one object per live instance (this one first); see
  :mod:`esb.bus.runtime.presence` for the fields.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from esb.bus.config.units import parse_duration
from esb.bus.errors import BusError
from esb.bus.problem import json_response, problem
from esb.bus.runtime.presence import Presence
from esb.bus.runtime.trace import AmbiguousRef, TraceRecorder
from esb.bus.runtime.trace_rabbitmq import TraceQueryTimeout

Endpoint = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Endpoint], Endpoint]

DEFAULT_SINCE = "1h"
#: Longer than any sensible retention: a bigger window is a typo, not a question.
MAX_SINCE = timedelta(days=400)



def ops_admin_routes(trace: TraceRecorder, presence: Presence, guard: Guard) -> list[Route]:
    """The trace and instances endpoints, each wrapped in ``guard`` (the admin token check)."""

    async def trace_one(request: Request) -> Response:
        envelope_id = request.path_params["id"]
        since_text = request.query_params.get("since", DEFAULT_SINCE)
        try:
            since = timedelta(seconds=parse_duration(since_text))
        except ValueError as exc:
            return problem(400, "Bad since", str(exc))
        if since <= timedelta(0) or since > MAX_SINCE:
            return problem(400, "Bad since", f"since must be more than 0 and at most "
                           f"{MAX_SINCE.days}d (got {since_text!r})")
        try:
            events = await trace.query(envelope_id, since)
        except AmbiguousRef as exc:
            return problem(409, "Ambiguous envelope reference", str(exc), ids=exc.ids)
        except TraceQueryTimeout as exc:
            return problem(504, "Trace query too slow", str(exc))
        except BusError as exc:
            return problem(503, "Trace unavailable", str(exc))
        if not events:
            return problem(404, "No trace",
                           f"nothing was recorded for envelope {envelope_id!r} in the last "
                           f"{since_text} (wrong id, older than the window or the trace "
                           "retention, or not yet flushed by another instance)")
        return json_response({"id": events[0].id, "since": since_text,
                      "events": [e.to_dict() for e in events]})

    async def instances(request: Request) -> Response:
        return json_response(presence.instances())

    return [
        Route("/admin/trace/{id:path}", guard(trace_one), methods=["GET"]),
        Route("/admin/instances", guard(instances), methods=["GET"]),
    ]
