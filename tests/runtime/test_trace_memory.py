"""MemoryTrace (the embedded bus's trace): time order, the since window, LRU bounds, and a
record() that never raises; and what the runtime records into it: each transform step the
ingress runs, and the status a delivery's outbound side answered."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from esb.adapters.spec import SendResult
from esb.bus.config.model import DeliveryConfig
from esb.bus.envelope import Envelope
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.runtime.delivery import DeliveryWorker, delivered_status
from esb.bus.runtime.ingress import Ingress, RouterHolder
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.trace import MemoryTrace, TraceEvent, TraceRecorder

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
    many = await trace.query_many(["a", "b", "nope"], HOUR)
    assert many == {"a": events, "b": await trace.query("b", HOUR), "nope": []}


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
    trace = MemoryTrace("i1")
    await trace.start()
    trace.record(["unhashable"], "accepted")  # type: ignore[arg-type]
    trace.record("a", "accepted", weird=object())
    assert trace.dropped == 1
    assert len(await trace.query("a", HOUR)) == 1
    await trace.close()


# -- what the runtime records: the ingress's transform steps, the delivery's status ------------

ROUTES = """
routes:
  - name: orders
    from: [shop]
    transform: [{jmespath: "{order: n}"}, {json-to-xml: {root: o}}]
    to:
      - destination: erp
        transform: [xml-to-json]
      - audit
  - name: copy
    from: [shop]
    to: [archive]
"""


class Wire:
    """Takes the ingress's publishes (the broker's confirm is not what is tested here)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope]] = []

    async def publish(self, address: str, envelope: Envelope) -> None:
        self.published.append((address, envelope))


def ingress(routes: str, trace: MemoryTrace, tmp_path: Path) -> tuple[Ingress, Wire]:
    router = compile_routes(parse_route_files({"r.yaml": routes}, base=tmp_path),
                            sources={"shop"}, destinations={"erp", "audit", "archive"},
                            base_dir=tmp_path)
    wire = Wire()
    return Ingress(wire, RouterHolder(router), Metrics(), "i1", trace=trace), wire  # type: ignore[arg-type]


def message() -> Envelope:
    return Envelope(source="shop", type="order", data={"n": 7})


async def test_each_transform_step_is_traced_with_where_it_ran(tmp_path: Path) -> None:
    trace = MemoryTrace("i1")
    ing, wire = ingress(ROUTES, trace, tmp_path)
    env = message()
    await ing.accept(env, "shop")
    events = await trace.query(env.id, HOUR)
    assert [(e.step, e.detail.get("route"), e.detail.get("destination"),
             e.detail.get("transform")) for e in events] == [
        ("accepted", None, None, None),
        ("transformed", "orders", None, "jmespath"),  # the route's steps: once, no destination
        ("transformed", "orders", None, "json-to-xml"),
        ("transformed", "orders", "erp", "xml-to-json"),  # the destination's own step
        ("routed", "orders", "erp", None),
        ("routed", "orders", "audit", None),  # no steps of its own: nothing more recorded
        ("routed", "copy", "archive", None),  # a pass-through route: no transformed at all
    ]
    for e in events[1:4]:
        assert set(e.detail) == {"route", "transform", "duration_ms",
                                 *(["destination"] if "destination" in e.detail else [])}
        assert isinstance(e.detail["duration_ms"], float) and e.detail["duration_ms"] >= 0
    by_dest = {e.esbdestination: e for _, e in wire.published}
    assert by_dest["erp"].data == {"o": {"order": "7"}}  # the steps ran, in order (XML: text)


async def test_steps_before_a_failure_or_a_drop_keep_their_events(tmp_path: Path) -> None:
    failing = ROUTES.replace('{json-to-xml: {root: o}}',
                             '{jmespath: {expression: missing, on_null: error}}')
    dropping = ROUTES.replace('{json-to-xml: {root: o}}',
                              '{jmespath: {expression: missing, on_null: drop}}')
    for routes, then in ((failing, ["transform-failed"]), (dropping, [])):
        trace = MemoryTrace("i1")
        ing, _ = ingress(routes, trace, tmp_path)
        env = message()
        await ing.accept(env, "shop")
        events = await trace.query(env.id, HOUR)
        assert [e.step for e in events] == ["accepted", "transformed", *then, "routed"]
        assert events[1].detail["transform"] == "jmespath"
        assert events[-1].detail["route"] == "copy"


class Peer:
    """An outbound side answering ``result`` (what ``send`` returns)."""

    def __init__(self, result: SendResult) -> None:
        self.result = result

    async def start(self) -> None:
        return None

    async def send(self, envelope: Envelope) -> SendResult:
        return self.result

    async def stop(self) -> None:
        return None


class Taken:
    """A consumed message, as the broker hands it to the delivery worker."""

    redelivered = False

    alive = True

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.acked = False

    def ack(self) -> None:
        self.acked = True

    def requeue(self) -> None:
        raise AssertionError("a delivered message is acked, not requeued")


async def test_delivered_carries_what_the_outbound_side_answered() -> None:
    long = "queued " * 40
    cases: list[tuple[SendResult, int | str]] = [
        (200, 200), (None, "accepted"), ("ok", "ok"), (long, long[:79] + "…")]
    metrics = Metrics()
    for i, (answered, shown) in enumerate(cases):
        trace = MemoryTrace("i1")
        dest = f"d{i}"
        worker = DeliveryWorker(dest, Peer(answered), Wire(), DeliveryConfig(),  # type: ignore[arg-type]
                                metrics, "i1", 1, trace=trace)
        env = message()
        taken = Taken(env)
        await worker.handle(taken)  # type: ignore[arg-type]
        assert taken.acked
        (event,) = await trace.query(env.id, HOUR)
        assert event.step == "delivered"
        assert event.detail["destination"] == dest and event.detail["status"] == shown
        assert event.detail["attempt"] == 1 and event.detail["latency_ms"] >= 0
        assert delivered_status(answered) == shown


async def test_a_prefix_or_a_key_names_one_envelope_or_is_refused_as_ambiguous() -> None:
    from datetime import timedelta

    import pytest

    from esb.bus.runtime.trace import AmbiguousRef, MemoryTrace

    t = MemoryTrace("i1")
    t.record("ab12-one", "accepted", endpoint="shop", key="order-1")
    t.record("ab34-two", "accepted", endpoint="shop")
    t.record("ab12-one", "routed", destination="erp")
    day = timedelta(days=1)
    assert [e.step for e in await t.query("order-1", day)] == ["accepted", "routed"]
    assert [e.id for e in await t.query("ab12", day)] == ["ab12-one", "ab12-one"]
    assert await t.query("zz", day) == []
    with pytest.raises(AmbiguousRef, match="'ab' names 2 envelopes: ab12-one, ab34-two"):
        await t.query("ab", day)
