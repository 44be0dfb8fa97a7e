"""The callers of one instance waiting for replies (request/reply, §12).

A caller is a future in a dict keyed by its request's envelope id, with one timer (a
``call_later`` handle) for its deadline: a thousand waiting callers are a thousand small
objects on the event loop, no thread or task each. The bus hands every reply addressed to this
instance to :meth:`PendingCalls.deliver`, which resolves the caller's future (a reply nobody
waits for any more is dropped). How many callers may wait at once is bounded
(``bus.max_waiting``): past it, new requests are refused as "bus unavailable" (503, retry).

When the reply (or the timeout) is there, :meth:`PendingCalls.finish` runs the route's reply
leg on it, records the trace step and the per-route metrics, and returns the envelope the
inbound side answers with: a successful reply transformed, or a failure reply
(:func:`esb.bus.reply.problem_of` reads it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, DropEnvelope, TransformError, TransientTransformError
from esb.bus.reply import failure_envelope, problem_of
from esb.bus.routing.router import ReplyLeg
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.trace import MemoryTrace, TraceRecorder

log = structlog.get_logger("esb.calls")


@dataclass
class Call:
    """One waiting caller."""

    request: Envelope
    route: str
    destination: str
    leg: ReplyLeg
    #: Unix time the caller stops waiting.
    deadline: float
    started: float = field(default_factory=time.perf_counter)
    future: asyncio.Future[Envelope] = field(default_factory=lambda: asyncio.get_running_loop()
                                             .create_future())
    timer: asyncio.TimerHandle | None = None


class PendingCalls:
    def __init__(self, metrics: Metrics, instance: str, limit: int = 10_000,
                 trace: TraceRecorder | None = None) -> None:
        self.metrics = metrics
        self.instance = instance
        self.limit = limit
        self.trace: TraceRecorder = trace if trace is not None else MemoryTrace(instance)
        #: The bus address replies to this instance come to (set once the bus gave one).
        self.address: str | None = None
        self._waiting: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def ready(self) -> bool:
        return self.address is not None

    def expect(self, request: Envelope, route: str, destination: str, leg: ReplyLeg,
               deadline: float) -> Envelope:
        """Register a caller for ``request`` (before it is published); returns the request as
        it goes on the bus: with this instance's reply address and the deadline."""
        if self.address is None:
            raise BusUnavailable("replies cannot be received yet (the bus is starting)")
        if len(self._waiting) >= self.limit:
            raise BusUnavailable(f"{self.limit} callers are already waiting for replies on "
                                 "this instance (bus.max_waiting)")
        if request.id in self._waiting:
            raise BusUnavailable(f"a request with id {request.id!r} is already waiting")
        call = Call(request, route, destination, leg, deadline)
        self._waiting[request.id] = call
        return request.model_copy(update={"esbreplyto": self.address,
                                          "esbdeadline": int(deadline * 1000)})

    def refuse(self, request: Envelope, route: str, destination: str, leg: ReplyLeg,
               exc: TransformError) -> None:
        """Register a caller whose request a step failed on before it could be sent: it is
        answered at once with that failure (502 naming the step)."""
        call = Call(request, route, destination, leg, time.time())
        call.future.set_result(failure_envelope(
            request, "transform", f"the request for {destination!r} could not be transformed: "
            f"{exc}", 502, destination=destination, step=exc.step))
        self._waiting[request.id] = call

    def forget(self, request_id: str) -> None:
        """Drop a caller whose request was not published after all."""
        call = self._waiting.pop(request_id, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()

    def waiting(self, request_id: str) -> Call | None:
        return self._waiting.get(request_id)

    def deliver(self, reply: Envelope) -> None:
        """A reply arrived from the bus (called by the bus for every reply to this instance)."""
        call = self._waiting.pop(reply.causationid or "", None)
        if call is None:
            log.info("reply for a caller no longer waiting dropped", request_id=reply.causationid)
            return
        if call.timer is not None:
            call.timer.cancel()
        if not call.future.done():
            call.future.set_result(reply)

    async def wait(self, call: Call) -> Envelope:
        """The reply to ``call``'s request, or a timeout failure at its deadline."""
        if not call.future.done():
            remaining = call.deadline - time.time()
            loop = asyncio.get_running_loop()
            call.timer = loop.call_later(max(0.0, remaining), self._expire, call)
        try:
            return await call.future
        finally:
            self.forget(call.request.id)

    def _expire(self, call: Call) -> None:
        self._waiting.pop(call.request.id, None)
        if not call.future.done():
            call.future.set_result(failure_envelope(
                call.request, "timeout",
                f"no reply from destination {call.destination!r} within "
                f"{call.leg.timeout:g}s (route {call.route!r})", 504,
                destination=call.destination))

    def finish(self, call: Call, reply: Envelope) -> Envelope:
        """``reply`` through the route's reply leg; trace and metrics of the call."""
        out = reply
        failure = problem_of(reply)
        if failure is None and len(call.leg.chain):
            try:
                out = call.leg.chain(reply)
            except (TransformError, TransientTransformError) as exc:
                out = failure_envelope(call.request, "transform",
                                       f"the reply from {call.destination!r} could not be "
                                       f"transformed: {exc}", 502,
                                       destination=call.destination, step=exc.step)
            except DropEnvelope:
                out = failure_envelope(call.request, "transform",
                                       f"a reply step of route {call.route!r} dropped the reply "
                                       f"from {call.destination!r}", 502,
                                       destination=call.destination)
            failure = problem_of(out)
        seconds = time.perf_counter() - call.started
        outcome = "ok" if failure is None else failure.kind
        self.metrics.requests.labels(call.route, outcome).inc()
        self.metrics.request_latency.labels(call.route).observe(seconds)
        self.trace.record(call.request.id, "answered", route=call.route,
                          destination=call.destination, outcome=outcome,
                          status=out.esbstatus if failure is None else failure.status,
                          latency_ms=round(seconds * 1000, 3),
                          **({"error": failure.detail[:500]} if failure else {}))
        return out
