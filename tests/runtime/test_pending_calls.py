"""Request/reply in process (embedded bus): the caller's side (pending calls, reply leg), the
destination's side (request, retries inside the deadline only, breaker, size limit), and many
callers waiting at once without a thread each. The same code runs on RabbitMQ (see
tests/e2e/test_request_reply*.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from esb.bus.broker.embedded import EmbeddedBus
from esb.bus.config.model import DeliveryConfig
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, PermanentError, TransientError
from esb.bus.reply import Reply, problem_of
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.runtime.calls import PendingCalls
from esb.bus.runtime.delivery import DeliveryWorker
from esb.bus.runtime.ingress import Ingress, RouterHolder, SourceContext
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.trace import MemoryTrace
from esb.bus.runtime.trace_legs import request_legs

STEPS = """
def greet(env):
    return {**env.data, "greeting": "hello " + env.data["name"]}

def broken(env):
    raise ValueError("cannot read this reply")

def refuse(env):
    raise ValueError("bad request data")
"""

ROUTES = """
routes:
  - name: lookup
    from: [api]
    to: crm
    reply: {timeout: 1s, transform: [rr_steps:greet]}
  - name: lookup-broken
    from: [api-broken]
    to: crm
    reply: {timeout: 1s, transform: [rr_steps:broken]}
  - name: lookup-patient
    from: [api-patient]
    to: crm
    reply: {timeout: 120s}
  - name: lookup-refused
    from: [api-refused]
    to: [{destination: crm, transform: [rr_steps:refuse]}]
    reply: {timeout: 1s}
"""

SOURCES = ("api", "api-broken", "api-refused", "api-patient")

Answer = Callable[[Envelope], Awaitable[Reply]]


@dataclass
class Backend:
    answer: Answer
    requests: list[Envelope] = field(default_factory=list)
    sent: list[Envelope] = field(default_factory=list)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, envelope: Envelope) -> int:
        self.sent.append(envelope)
        return 200

    async def request(self, envelope: Envelope) -> Reply:
        self.requests.append(envelope)
        return await self.answer(envelope)


async def customer(envelope: Envelope) -> Reply:
    return Reply(200, {"ETag": '"1"'}, b'{"name": "Ada"}', "application/json")


@dataclass
class Harness:
    backend: Backend
    calls: PendingCalls
    worker: DeliveryWorker
    trace: MemoryTrace
    contexts: dict[str, SourceContext]

    async def ask(self, source: str = "api", data: Any = None) -> Envelope | Any:
        env = Envelope(source="caller", type="customer.get", data=data or {"id": 1})
        return await self.contexts[source].request(env)


@pytest.fixture
def steps(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "rr_steps.py").write_text(STEPS)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("rr_steps", None)


@pytest.fixture
async def make(steps: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[EmbeddedBus, DeliveryWorker]] = []

    async def build(answer: Answer = customer, limit: int = 10_000, **delivery: Any) -> Harness:
        router = compile_routes(parse_route_files({"r.yaml": ROUTES}, base=steps),
                                sources=set(SOURCES),
                                destinations={"crm"}, base_dir=steps)
        bus = EmbeddedBus()
        await bus.start(["crm"])
        metrics, trace = Metrics(), MemoryTrace("i1")
        calls = PendingCalls(metrics, "i1", limit, trace)
        calls.address = await bus.open_replies(calls.deliver)
        ingress = Ingress(bus, RouterHolder(router), metrics, "i1", trace=trace)
        backend = Backend(answer)
        cfg = DeliveryConfig(**{"breaker": False, "backoff": {"initial": 0.05, "max": 0.2},
                                **delivery})
        worker = DeliveryWorker("crm", backend, bus, cfg, metrics, "i1", 100, trace)
        await worker.start()
        made.append((bus, worker))
        contexts = {name: SourceContext(name, steps, "i1", 1 << 20, ingress, calls=calls)
                    for name in SOURCES}
        return Harness(backend, calls, worker, trace, contexts)

    yield build
    for bus, worker in made:
        await worker.drain(1)
        await bus.close()


async def test_the_reply_comes_back_through_the_reply_leg(make: Any) -> None:
    h = await make()
    got = await h.ask()
    assert problem_of(got) is None
    assert got.data == {"name": "Ada", "greeting": "hello Ada"}
    assert got.esbstatus == 200 and got.esbheaders == {"etag": '"1"'}
    assert h.backend.requests[0].esbreplyto == h.calls.address
    assert len(h.calls) == 0
    events = await h.trace.query(got.causationid, _day())
    steps = [e.step for e in events]
    assert steps[0] == "accepted" and "replied" in steps and steps[-1] == "answered"
    routed = events[steps.index("routed")].detail
    assert routed["leg"] == "request" and routed["timeout"] == 1.0
    replied = events[steps.index("replied")].detail
    assert replied["status"] == 200 and replied["latency_ms"] >= 0
    # the reply is stamped when it left, before the caller's answer
    assert steps.index("replied") < steps.index("answered")
    legs = request_legs([e.to_dict() for e in events])
    assert legs is not None and legs["route"] == "lookup" and legs["call"]["status"] == 200
    assert legs["answer"]["latency_ms"] >= legs["reply"]["latency_ms"]


async def test_a_reply_the_broker_returns_later_is_traced_as_undelivered(
        make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bus that takes a reply and learns only later that no caller's queue was there (the
    broker's return, see the RabbitMQ bus test) calls ``returned``: the trace's last
    ``replied`` then says the caller is gone, with the broker's reason."""
    h = await make()
    bus = h.worker.bus
    sent = bus.reply

    async def reply_then_returned(address: str, envelope: Envelope, returned: Any = None
                                  ) -> None:
        await sent(address, envelope, returned)
        asyncio.get_running_loop().call_later(0.01, returned, "312 NO_ROUTE")

    monkeypatch.setattr(bus, "reply", reply_then_returned)
    got = await h.ask()
    assert problem_of(got) is None
    for _ in range(500):  # the return comes after the answer
        events = await h.trace.query(got.causationid, _day())
        if len([e for e in events if e.step == "replied"]) == 2:
            break
        await asyncio.sleep(0.02)
    last = [e.detail for e in events if e.step == "replied"][-1]
    assert last["outcome"] == "ok" and last["status"] == 200
    assert "caller is gone" in last["error"] and "312 NO_ROUTE" in last["error"]
    legs = request_legs([e.to_dict() for e in events])
    assert legs is not None and "caller is gone" in legs["reply"]["error"]


async def test_a_reply_after_the_deadline_is_dropped_and_traced(make: Any) -> None:
    h = await make()
    route = h.contexts["api"].ingress.routes.current.routes[0].reply
    from esb.bus.reply import reply_envelope
    from esb.bus.routing.plan import ReplyPlan

    request = Envelope(source="caller", type="customer.get", data={"id": 1})
    sent = h.calls.expect(request.id, request, ReplyPlan("lookup", "crm", route, request),
                          time.time() + 0.05)
    call = h.calls.waiting(request.id)
    assert call is not None
    got = await h.calls.wait(call)
    assert problem_of(got) is not None and problem_of(got).kind == "timeout"  # type: ignore[union-attr]
    h.calls.deliver(reply_envelope(sent, Reply(200, {}, b'{"name": "Ada"}',
                                                "application/json"), "crm"))
    assert len(h.calls) == 0
    events = await h.trace.query(request.id, _day())
    assert [(e.step, e.detail["destination"], e.detail["status"]) for e in events] == [
        ("reply-dropped", "crm", 200)]


async def test_a_reply_the_leg_cannot_transform_is_a_502_naming_the_step(make: Any) -> None:
    h = await make()
    got = await h.ask("api-broken")
    failure = problem_of(got)
    assert failure is not None and failure.status == 502 and failure.kind == "transform"
    assert failure.step == "rr_steps:broken"
    assert len(h.backend.requests) == 1  # the destination is not called again


async def test_a_request_its_steps_refuse_is_answered_at_once(make: Any) -> None:
    h = await make()
    got = await h.ask("api-refused")
    failure = problem_of(got)
    assert failure is not None and failure.kind == "transform" and failure.status == 502
    assert "bad request data" in failure.detail
    assert h.backend.requests == [] and len(h.calls) == 0


async def test_no_answer_costs_the_caller_exactly_its_timeout_and_no_retry(make: Any) -> None:
    async def never(envelope: Envelope) -> Reply:
        await asyncio.sleep(3600)
        raise AssertionError

    h = await make(never, timeout=10)
    started = time.monotonic()
    got = await h.ask()
    took = time.monotonic() - started
    failure = problem_of(got)
    assert failure is not None and failure.status == 504 and failure.kind == "timeout"
    assert 0.95 <= took < 3
    await asyncio.sleep(1.5)  # the worker gave up at the deadline too, without a second call
    assert len(h.backend.requests) == 1


async def test_transient_failures_are_retried_inside_the_deadline_only(make: Any) -> None:
    async def flaky(envelope: Envelope) -> Reply:
        if len(backend_calls) < 2:
            backend_calls.append(1)
            raise TransientError("HTTP 503", status=503)
        return await customer(envelope)

    backend_calls: list[int] = []
    h = await make(flaky)
    got = await h.ask()
    assert problem_of(got) is None and len(h.backend.requests) == 3

    async def down(envelope: Envelope) -> Reply:
        raise TransientError("HTTP 500", status=500)

    h = await make(down)
    got = await h.ask()
    failure = problem_of(got)
    assert failure is not None and failure.status == 502 and failure.kind == "backend"
    calls = len(h.backend.requests)
    await asyncio.sleep(1.2)
    assert len(h.backend.requests) == calls  # nothing after the caller's deadline


@pytest.mark.parametrize(("status", "kind", "expected"), [
    (404, "not-found", 404), (422, "rejected", 422), (401, "backend", 502),
    (400, "rejected", 400)])
async def test_permanent_failures_map_to_the_callers_status(make: Any, status: int, kind: str,
                                                            expected: int) -> None:
    async def refuse(envelope: Envelope) -> Reply:
        raise PermanentError(f"HTTP {status}", status=status)

    h = await make(refuse)
    failure = problem_of(await h.ask())
    assert failure is not None and (failure.kind, failure.status) == (kind, expected)
    assert len(h.backend.requests) == 1


async def test_a_soap_fault_is_a_502_with_the_fault_string(make: Any) -> None:
    async def fault(envelope: Envelope) -> Reply:
        raise PermanentError("SOAP GetCustomer: SOAP fault Client: no customer 9", status=500,
                             fault="Client.UnknownCustomer: no customer 9")

    h = await make(fault)
    failure = problem_of(await h.ask())
    assert failure is not None and failure.status == 502
    assert failure.detail == "Client.UnknownCustomer: no customer 9"


async def test_an_open_breaker_answers_503_with_retry_after_without_calling(make: Any) -> None:
    h = await make(breaker={"failures": 1, "cooldown": 30})
    assert h.worker.breaker is not None
    h.worker.breaker.record(False)  # open
    failure = problem_of(await h.ask())
    assert failure is not None and failure.status == 503 and failure.kind == "unavailable"
    assert 25 <= (failure.retry_after or 0) <= 30
    assert h.backend.requests == []


async def test_a_reply_over_the_size_limit_is_a_502(make: Any) -> None:
    async def huge(envelope: Envelope) -> Reply:
        return Reply(200, {}, b"x" * 5000, "text/plain")

    h = await make(huge, max_reply=1000)
    failure = problem_of(await h.ask())
    assert failure is not None and failure.status == 502 and failure.kind == "too-large"


async def test_a_one_way_sender_on_a_request_reply_route_delivers_one_way(make: Any) -> None:
    h = await make()
    env = Envelope(source="caller", type="customer.get", data={"id": 1})
    accepted = await h.contexts["api"].accept(env)
    assert accepted.id == env.id
    await _until(lambda: h.backend.sent)
    assert h.backend.requests == [] and h.backend.sent[0].esbreplyto is None


async def test_callers_beyond_the_limit_are_told_to_retry(make: Any) -> None:
    release = asyncio.Event()

    async def held(envelope: Envelope) -> Reply:
        await release.wait()
        return await customer(envelope)

    h = await make(held, limit=2)
    first = [asyncio.create_task(h.ask()) for _ in range(2)]
    await _until(lambda: len(h.calls) == 2)
    with pytest.raises(BusUnavailable, match="max_waiting"):
        await h.ask()
    release.set()
    assert all(problem_of(r) is None for r in await asyncio.gather(*first))


async def test_a_thousand_callers_wait_at_once_without_a_thread_each(make: Any) -> None:
    release = asyncio.Event()

    async def held(envelope: Envelope) -> Reply:
        await release.wait()
        return await customer(envelope)

    h = await make(held, concurrency=1000)
    threads = threading.active_count()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.create_task(h.ask("api-patient", {"id": i})) for i in range(1000)]
        await _until(lambda: len(h.backend.requests) == 1000, timeout=60)
        assert len(h.calls) == 1000
        held_bytes = tracemalloc.get_traced_memory()[0] - base
        assert threading.active_count() <= threads  # no thread per caller
        print(f"1000 waiting calls hold {held_bytes / 1000:.0f} bytes each")
        assert held_bytes < 64 * 1024 * 1024  # bounded: a few KiB per waiting call
        release.set()
        results = await asyncio.gather(*tasks)
    finally:
        tracemalloc.stop()
    assert all(problem_of(r) is None for r in results)
    assert len(h.calls) == 0


async def _until(check: Callable[[], Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _day() -> Any:
    from datetime import timedelta

    return timedelta(days=1)



async def test_a_reply_that_arrives_before_the_publish_returned_still_reaches_its_caller(
        make: Any) -> None:
    """On RabbitMQ the reply can come back before the request's confirm has: the caller must
    still find its call (else it would be answered as if the route were one-way)."""
    h = await make()
    router_reply = h.contexts["api"].ingress.routes.current.routes[0].reply
    from esb.bus.reply import reply_envelope
    from esb.bus.routing.plan import ReplyPlan

    request = Envelope(source="caller", type="customer.get", data={"id": 1})
    plan = ReplyPlan("lookup", "crm", router_reply, request)
    sent = h.calls.expect(request.id, request, plan, time.time() + 5)
    h.calls.deliver(reply_envelope(sent, Reply(200, {}, b'{"name": "Ada"}',
                                                "application/json"), "crm"))
    call = h.calls.waiting(request.id)
    assert call is not None
    got = await h.calls.wait(call)
    assert got.data == {"name": "Ada"} and len(h.calls) == 0
