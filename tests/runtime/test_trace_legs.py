"""The legs of a request/reply call read from its trace events (trace_legs.request_legs)."""

from __future__ import annotations

from typing import Any

from esb.bus.runtime.trace_legs import request_legs


def ev(ms: float, step: str, instance: str = "a", **detail: Any) -> dict[str, Any]:
    return {"id": "e1", "at": f"2026-01-01T00:00:{ms / 1000:09.6f}Z", "step": step,
            "instance": instance, "detail": detail}


ROUTED = ev(0, "routed", route="lookup", version=2, destination="crm", leg="request",
            timeout=2.0)


def test_every_leg_of_an_answered_call_with_a_retry() -> None:
    events = [ev(0, "accepted", endpoint="api", version=2), ROUTED,
              ev(15, "attempt", "b", destination="crm", outcome="transient", status=503,
                 latency_ms=4.0, attempt=1),
              ev(16, "retry-scheduled", "b", destination="crm", attempt=1, retry_in=0.2),
              ev(230, "delivered", "b", destination="crm", status=200, latency_ms=12.5,
                 attempt=2),
              ev(231, "replied", "b", destination="crm", status=200, outcome="ok",
                 latency_ms=220.0),
              ev(233, "transformed", route="lookup", destination="crm", leg="reply",
                 transform="jmespath", duration_ms=0.1),
              ev(234, "answered", route="lookup", destination="crm", outcome="ok", status=200,
                 latency_ms=233.8)]
    legs = request_legs(events)
    assert legs == {
        "route": "lookup", "destination": "crm", "timeout": 2.0,
        "request": {"instance": "a", "offset_ms": 0.0},
        "call": {"instance": "b", "offset_ms": 230.0, "status": 200, "latency_ms": 12.5,
                 "attempts": 2, "outcome": "delivered"},
        "reply": {"instance": "b", "offset_ms": 231.0, "status": 200, "outcome": "ok",
                  "latency_ms": 220.0},
        "answer": {"instance": "a", "offset_ms": 234.0, "status": 200, "outcome": "ok",
                   "latency_ms": 233.8},
        "dropped": None}


def test_a_timeout_with_a_late_reply_and_a_wire_tap_alongside() -> None:
    events = [ev(0, "accepted"), ROUTED,
              ev(0, "routed", route="tap", version=2, destination="audit"),
              ev(5, "delivered", "b", destination="audit", status=202, latency_ms=3.0),
              ev(2001, "answered", route="lookup", destination="crm", outcome="timeout",
                 status=504, latency_ms=2001.0, error="no reply from destination 'crm'"),
              ev(2003, "attempt", "b", destination="crm", outcome="transient",
                 latency_ms=1990.0, error="no answer within 1.99s", attempt=1),
              ev(2004, "replied", "b", destination="crm", status=504, outcome="timeout",
                 latency_ms=1995.0),
              ev(2006, "reply-dropped", destination="crm", status=504,
                 reason="the caller was no longer waiting")]
    legs = request_legs(events)
    assert legs is not None
    assert legs["call"] == {"instance": "b", "offset_ms": 2003.0, "latency_ms": 1990.0,
                            "attempts": 1, "outcome": "transient"}  # the audit copy is not it
    assert legs["answer"]["status"] == 504 and legs["answer"]["outcome"] == "timeout"
    assert legs["answer"]["error"].startswith("no reply")
    assert legs["dropped"] == {"instance": "a", "offset_ms": 2006.0, "status": 504}


def test_legs_not_yet_flushed_are_none_and_one_way_traces_have_no_legs() -> None:
    legs = request_legs([ev(0, "accepted"), ROUTED])
    assert legs is not None and legs["request"] == {"instance": "a", "offset_ms": 0.0}
    assert legs["call"] is None and legs["reply"] is None and legs["answer"] is None
    # only the caller's side flushed: the route comes from its answer
    legs = request_legs([ev(0, "accepted"), ev(9, "answered", route="lookup",
                                                 destination="crm", outcome="ok",
                                                 status=200, latency_ms=9.0)])
    assert legs is not None and legs["route"] == "lookup" and legs["request"] is None
    assert legs["timeout"] is None and legs["answer"]["offset_ms"] == 9.0
    assert request_legs([ev(0, "accepted"), ev(0, "routed", route="o", destination="x"),
                         ev(4, "delivered", destination="x", status=200)]) is None
    assert request_legs([]) is None
