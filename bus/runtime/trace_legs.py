"""The legs of one request/reply call, read from its trace (§12, ``esb trace``).

A request/reply envelope's trace events (:mod:`esb.bus.runtime.trace`) are spread over two
instances — the caller's and the one that called the destination. :func:`request_legs` sums
them up as the caller lived them::

    request   the copy the caller waits for: ``routed`` with ``leg=request`` (route, timeout)
    call      each ``attempt`` / ``delivered`` at the destination: the last one's status and
              latency, how many were made
    reply     ``replied``: the answer sent back, and how long the calling instance held the
              request (calls and retries)
    answer    ``answered``: what the caller got and how long it waited in all
    dropped   ``reply-dropped``: the reply came after the caller had stopped waiting

Every leg has ``offset_ms``, its time since the trace's first event. A leg with no event yet
is None (another instance has not flushed it, or it never happened: a timeout has no reply).
The admin API returns this beside the events; the CLI prints it under the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

Event = Mapping[str, Any]

#: Steps that are one call to the destination.
_CALLS = ("attempt", "delivered")
#: What the reply and answer legs show of their step's detail.
_ANSWERED = ("status", "outcome", "latency_ms", "error")


def request_legs(events: Sequence[Event]) -> dict[str, Any] | None:
    """The legs of the request/reply call ``events`` (one envelope's trace, oldest first, as
    :meth:`~esb.bus.runtime.trace.TraceEvent.to_dict` gives them); None when it was no
    request/reply call."""
    request = next((e for e in events if e.get("step") == "routed"
                    and _detail(e).get("leg") == "request"), None)
    answer = _last(events, "answered")
    if request is None and answer is None:
        return None
    named = _detail(request if request is not None else answer)  # type: ignore[arg-type]
    route, destination = named.get("route"), named.get("destination")
    start = _at(events[0])
    calls = [e for e in events if e.get("step") in _CALLS
             and _detail(e).get("destination") == destination]
    call = _leg(calls[-1] if calls else None, start, "status", "latency_ms")
    return {"route": route, "destination": destination,
            "timeout": _detail(request).get("timeout") if request else None,
            "request": _leg(request, start),
            "call": None if call is None else {
                **call, "attempts": len(calls),
                "outcome": "delivered" if calls[-1].get("step") == "delivered"
                else _detail(calls[-1]).get("outcome")},
            "reply": _leg(_last(events, "replied"), start, *_ANSWERED),
            "answer": _leg(answer, start, *_ANSWERED),
            "dropped": _leg(_last(events, "reply-dropped"), start, "status")}


def _detail(event: Event | None) -> Mapping[str, Any]:
    return (event or {}).get("detail") or {}


def _last(events: Sequence[Event], step: str) -> Event | None:
    return next((e for e in reversed(events) if e.get("step") == step), None)


def _at(event: Event) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.get("at", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _leg(event: Event | None, start: datetime | None, *keys: str) -> dict[str, Any] | None:
    """``event``'s leg (None without an event): its instance, offset and ``keys`` of its
    detail that are set."""
    if event is None:
        return None
    at = _at(event)
    offset = round((at - start).total_seconds() * 1000, 3) if at and start else None
    detail = _detail(event)
    return {"instance": event.get("instance"), "offset_ms": offset,
            **{k: detail.get(k) for k in keys if detail.get(k) is not None}}
