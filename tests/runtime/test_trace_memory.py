"""MemoryTrace (the embedded bus's trace): time order, the since window, LRU bounds, and a
record() that never raises."""

from __future__ import annotations

import time
from datetime import timedelta

from esb.bus.runtime.trace import MemoryTrace, TraceEvent, TraceRecorder, open_trace

HOUR = timedelta(hours=1)


async def test_events_of_one_id_come_back_in_time_order() -> None:
    trace = MemoryTrace("i1")
    assert isinstance(trace, TraceRecorder)
    trace.record("a", "accepted", endpoint="shop", version=3)
    trace.record("b", "accepted", endpoint="shop")
    trace.record("a", "routed", route="r1", version=3, destination="erp")
    trace.record("a", "attempt", destination="erp", outcome="transient", status=503,
                 latency_ms=12.5, error="HTTP 503")
    trace.record("a", "delivered", destination="erp", status=200, latency_ms=3.0)
    events = await trace.query("a", HOUR)
    assert [e.step for e in events] == ["accepted", "routed", "attempt", "delivered"]
    assert all(isinstance(e, TraceEvent) and e.id == "a" and e.instance == "i1"
               for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[2].detail == {"destination": "erp", "outcome": "transient", "status": 503,
                                "latency_ms": 12.5, "error": "HTTP 503"}
    as_dict = events[0].to_dict()
    assert as_dict["at"].endswith("Z") and as_dict["step"] == "accepted"
    assert await trace.query("nope", HOUR) == []


async def test_a_step_recorded_late_keeps_the_time_it_happened() -> None:
    # the ingress records "accepted" only after the confirm; another instance may have
    # attempted the delivery by then, and the trace must still read cause before effect
    trace = MemoryTrace("i1")
    happened = time.time()
    time.sleep(0.002)
    trace.record("a", "attempt", destination="erp", outcome="transient")
    trace.record("a", "accepted", at=happened, endpoint="shop")
    events = await trace.query("a", HOUR)
    assert [e.step for e in events] == ["accepted", "attempt"]
    assert abs(events[0].at.timestamp() - happened) < 1e-5
    assert events[0].detail == {"endpoint": "shop"}


async def test_the_since_window_excludes_older_events(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    trace = MemoryTrace("i1")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 7200)
    trace.record("a", "accepted")
    monkeypatch.setattr(time, "time", lambda: now)
    trace.record("a", "delivered")
    assert [e.step for e in await trace.query("a", HOUR)] == ["delivered"]
    assert len(await trace.query("a", timedelta(hours=3))) == 2


async def test_bounded_by_ids_least_recently_written_evicted_first() -> None:
    trace = MemoryTrace("i1", max_ids=3, max_events=4)
    for eid in ("a", "b", "c"):
        trace.record(eid, "accepted")
    trace.record("a", "routed")  # a is now the most recent
    trace.record("d", "accepted")  # evicts b
    assert len(trace) == 3
    assert await trace.query("b", HOUR) == []
    assert len(await trace.query("a", HOUR)) == 2
    for n in range(10):  # per-id bound: the oldest events of one id go first
        trace.record("a", "attempt", attempt=n)
    events = await trace.query("a", HOUR)
    assert [e.detail["attempt"] for e in events] == [6, 7, 8, 9]
    assert trace.dropped == 8


async def test_record_never_raises_and_start_close_are_harmless() -> None:
    trace = open_trace(None, "esb", "i1")
    assert isinstance(trace, MemoryTrace)
    await trace.start()
    trace.record(["unhashable"], "accepted")  # type: ignore[arg-type]
    trace.record("a", "accepted", weird=object())
    assert trace.dropped == 1
    assert len(await trace.query("a", HOUR)) == 1
    await trace.close()
