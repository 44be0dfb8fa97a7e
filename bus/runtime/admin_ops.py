"""Admin API endpoints for operating the bus: message trace and live instances.

* ``GET /admin/trace/{id}?since=1h`` → ``{"id", "since", "events": [TraceEvent...]}``, oldest
  first, from every instance, and ``legs`` for a request/reply call
  (:func:`~esb.bus.runtime.trace_legs.request_legs`); 404 problem+json when nothing was
  recorded for that id in the window; 400 on a bad ``since``; 503 when the trace store
  cannot be read; 504 when reading the window takes too long.
* ``GET /admin/trace?key=K`` or ``?correlation=C`` (``&since=1h``) → ``{"ids": [...]}``: the
  envelopes accepted with that idempotency key or correlation id.
* ``GET /admin/stats?minutes=15`` → recent fleet samples per destination (rates, latency
  percentiles, in flight, breaker; :mod:`esb.bus.runtime.stats`), for the console's charts.
* ``GET /admin/plugins`` → installed adapters and transformers.
* ``GET /admin/instances`` → a JSON list, one object per live instance (this one first); see
  :mod:`esb.bus.runtime.presence` for the fields.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from esb.bus.config.units import parse_duration
from esb.bus.errors import BusError
from esb.bus.problem import json_response, problem
from esb.bus.runtime.presence import Presence
from esb.bus.runtime.stats import StatsHistory
from esb.bus.runtime.trace import AmbiguousRef, TraceRecorder
from esb.bus.runtime.trace_legs import request_legs
from esb.bus.runtime.trace_rabbitmq import TraceQueryTimeout

#: An admin endpoint, and the guard (the admin token check) every ``*_admin_routes`` wraps.
Endpoint = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Endpoint], Endpoint]
T = TypeVar("T")

DEFAULT_SINCE = "1h"
MAX_STATS_MINUTES = 60
#: Longer than any sensible retention: a bigger window is a typo, not a question.
MAX_SINCE = timedelta(days=400)


def lookback(text: str) -> timedelta:
    """A ``since`` parameter (trace queries, dead-letter listings): a duration more than 0
    and at most :data:`MAX_SINCE`; ValueError saying so otherwise."""
    seconds = parse_duration(text)
    if not 0 < seconds <= MAX_SINCE.total_seconds():
        raise ValueError(f"since must be more than 0 and at most {MAX_SINCE.days}d "
                         f"(got {text!r})")
    return timedelta(seconds=seconds)


async def _read_trace(request: Request, read: Callable[[timedelta], Awaitable[T]]
                      ) -> T | Response:
    """What ``read`` finds in the trace within the request's ``since``, or the problem to
    answer (400 a bad ``since``, 409 an ambiguous reference, 504 too slow, 503 unavailable)."""
    try:
        since = lookback(request.query_params.get("since", DEFAULT_SINCE))
    except ValueError as exc:
        return problem(400, "Bad since", str(exc))
    try:
        return await read(since)
    except AmbiguousRef as exc:
        return problem(409, "Ambiguous envelope reference", str(exc), ids=exc.ids)
    except TraceQueryTimeout as exc:
        return problem(504, "Trace query too slow", str(exc))
    except BusError as exc:
        return problem(503, "Trace unavailable", str(exc))


def ops_admin_routes(trace: TraceRecorder, presence: Presence, guard: Guard,
                     stats: StatsHistory, plugins: Callable[[], dict[str, Any]]
                     ) -> list[Route]:
    """The trace, instances, stats and plugins endpoints, each wrapped in ``guard``."""

    async def trace_one(request: Request) -> Response:
        envelope_id = request.path_params["id"]
        since_text = request.query_params.get("since", DEFAULT_SINCE)
        events = await _read_trace(request, lambda since: trace.query(envelope_id, since))
        if isinstance(events, Response):
            return events
        if not events:
            return problem(404, "No trace",
                           f"nothing was recorded for envelope {envelope_id!r} in the last "
                           f"{since_text} (wrong id, older than the window or the trace "
                           "retention, or not yet flushed by another instance)")
        body: dict[str, Any] = {"id": events[0].id, "since": since_text,
                                "events": [e.to_dict() for e in events]}
        legs = request_legs(body["events"])
        if legs is not None:
            body["legs"] = legs
        return json_response(body)

    async def trace_search(request: Request) -> Response:
        q = request.query_params
        asked = [(f, q[p]) for p, f in (("key", "key"), ("correlation", "correlationid"))
                 if q.get(p)]
        if len(asked) != 1:
            return problem(400, "Bad trace search",
                           "search by one of ?key=IDEMPOTENCY-KEY or ?correlation=ID")
        field, value = asked[0]
        ids = await _read_trace(request, lambda since: trace.find(field, value, since))
        if isinstance(ids, Response):
            return ids
        return json_response({"ids": ids, "since": q.get("since", DEFAULT_SINCE)})

    async def instances(request: Request) -> Response:
        return json_response(presence.instances())

    async def recent_stats(request: Request) -> Response:
        try:
            minutes = int(request.query_params.get("minutes", "15"))
        except ValueError:
            minutes = 0
        if not 1 <= minutes <= MAX_STATS_MINUTES:
            return problem(400, "Bad minutes",
                           f"minutes is a whole number from 1 to {MAX_STATS_MINUTES}")
        return json_response({"interval_s": stats.interval,
                              "samples": stats.recent(minutes * 60.0)})

    async def installed(request: Request) -> Response:
        return json_response(plugins())

    return [
        Route("/admin/trace", guard(trace_search), methods=["GET"]),
        Route("/admin/trace/{id:path}", guard(trace_one), methods=["GET"]),
        Route("/admin/instances", guard(instances), methods=["GET"]),
        Route("/admin/stats", guard(recent_stats), methods=["GET"]),
        Route("/admin/plugins", guard(installed), methods=["GET"]),
    ]
