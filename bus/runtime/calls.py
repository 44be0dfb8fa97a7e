"""The callers of one instance waiting for replies (request/reply, §12).

A caller is a future in a dict keyed by its request's envelope id, with one timer (a
``call_later`` handle) for its deadline: a thousand waiting callers are a thousand small
objects on the event loop, no thread or task each. The bus hands every reply addressed to this
instance to :meth:`PendingCalls.deliver`, which resolves the caller's future (a reply nobody
waits for any more is dropped). How many callers may wait at once is bounded
(``bus.max_waiting``): past it, new requests are refused as "bus unavailable" (503, retry).

A route with a response cache (``cache:``, :mod:`esb.bus.runtime.reply_cache`) may answer a
caller at once: :meth:`PendingCalls.expect` then returns None (nothing is published) and the
caller's future already holds the cached answer.

When the reply (or the timeout) is there, :meth:`PendingCalls.answer` runs the route's reply
leg on it (:func:`esb.bus.routing.dispatch.reply_answer`, the plan's way back), records the
trace steps and the per-route metrics, and returns the envelope the inbound side answers
with: a successful reply transformed, or a failure reply (read with
:func:`esb.bus.reply.problem_of`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable
from esb.bus.reply import failure_envelope, problem_of
from esb.bus.routing.dispatch import reply_answer_async
from esb.bus.routing.plan import ReplyPlan
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.reply_cache import ReplyCache
from esb.bus.runtime.trace import MemoryTrace, TraceRecorder

log = structlog.get_logger("esb.calls")


@dataclass
class Call:
    """One waiting caller."""

    request: Envelope
    reply: ReplyPlan
    #: Unix time the caller stops waiting.
    deadline: float
    started: float = field(default_factory=time.perf_counter)
    future: asyncio.Future[Envelope] = field(default_factory=lambda: asyncio.get_running_loop()
                                             .create_future())
    timer: asyncio.TimerHandle | None = None
    #: Its key in the route's response cache (None: the route caches nothing).
    cache_key: bytes | None = None
    #: Answered from the cache: the reply leg has run already.
    cached: bool = False


class PendingCalls:
    def __init__(self, metrics: Metrics, instance: str, limit: int = 10_000,
                 trace: TraceRecorder | None = None, cache: ReplyCache | None = None) -> None:
        self.metrics = metrics
        self.cache = cache if cache is not None else ReplyCache()
        self.instance = instance
        self.limit = limit
        self.trace: TraceRecorder = trace if trace is not None else MemoryTrace(instance)
        #: The bus address replies to this instance come to (set once the bus gave one).
        self.address: str | None = None
        self._waiting: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, key: str, request: Envelope, reply: ReplyPlan, deadline: float,
               asked: Envelope | None = None) -> Envelope | None:
        """Register a caller (by ``key``, its envelope's id) before ``request`` is published;
        returns the request as it goes on the bus: with that id, this instance's reply
        address and the deadline — or None when the route's response cache answers it
        (looked up by the ``key`` fields of ``asked``, default ``request``): then nothing is
        published."""
        spec = reply.leg.cache
        cache_key = None
        if spec is not None:
            cache_key = self.cache.key(spec, asked if asked is not None else request,
                                       request.esbrouteversion)
            hit = self.cache.route(reply.route, spec).get(cache_key)
            self.metrics.child(self.metrics.cache, reply.route,
                               "miss" if hit is None else "hit").inc()
            if hit is not None and key not in self._waiting:
                call = Call(request.model_copy(update={"id": key}), reply, time.time(),
                            cached=True)
                call.future.set_result(hit.model_copy(update={
                    "causationid": key, "correlationid": request.correlationid}))
                self._waiting[key] = call
                return None
        if self.address is None:
            raise BusUnavailable("replies cannot be received yet (the bus is starting)")
        if len(self._waiting) >= self.limit:
            raise BusUnavailable(f"{self.limit} callers are already waiting for replies on "
                                 "this instance (bus.max_waiting)")
        if key in self._waiting:
            raise BusUnavailable(f"a request with id {key!r} is already waiting")
        out = request.model_copy(update={"id": key, "esbreplyto": self.address,
                                         "esbdeadline": int(deadline * 1000)})
        self._waiting[key] = Call(out, reply, deadline, cache_key=cache_key)
        return out

    def refuse(self, request: Envelope, reply: ReplyPlan) -> None:
        """Register a caller whose request a step failed on (or dropped) before it could be
        sent: it is answered at once with that failure (502 naming the step)."""
        call = Call(request, reply, time.time())
        call.future.set_result(failure_envelope(
            request, "transform", f"the request for {reply.destination!r} could not be "
            f"transformed: {reply.error}", 502, destination=reply.destination))
        self._waiting[request.id] = call

    def forget(self, request_id: str) -> None:
        """Drop a caller whose request was not published after all."""
        call = self._waiting.pop(request_id, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()

    def waiting(self, request_id: str) -> Call | None:
        return self._waiting.get(request_id)

    def deliver(self, reply: Envelope) -> None:
        """A reply arrived from the bus (called by the bus for every reply to this instance).
        The caller stays registered until :meth:`wait` returns: a reply may arrive before the
        publish's confirm has reached the caller, which then still finds its call."""
        call = self._waiting.get(reply.causationid or "")
        if call is None:
            log.info("reply for a caller no longer waiting dropped", request_id=reply.causationid)
            if reply.causationid:
                self.trace.record(reply.causationid, "reply-dropped",
                                  destination=reply.esbdestination, status=reply.esbstatus,
                                  reason="the caller was no longer waiting")
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
            r = call.reply
            call.future.set_result(failure_envelope(
                call.request, "timeout", f"no reply from destination {r.destination!r} within "
                f"{r.leg.timeout:g}s (route {r.route!r})", 504, destination=r.destination))

    async def answer(self, call: Call) -> Envelope:
        """What the caller is answered with: the reply (or the timeout) through the route's
        reply leg (:func:`~esb.bus.routing.dispatch.reply_answer_async`), with the call's
        trace steps and metrics recorded. A leg's steps that wait on another process (XSLT in
        its sandbox) are awaited, as the ingress plans such steps: the event loop serves
        other requests meanwhile."""
        got = await self.wait(call)
        notes: list[tuple[str, dict[str, object]]] = []
        out = got if call.cached else await reply_answer_async(call.reply, call.request, got, notes)
        failure = problem_of(out)
        spec = call.reply.leg.cache
        if failure is None and call.cache_key is not None and spec is not None:
            self.cache.route(call.reply.route, spec).put(call.cache_key, out)
        seconds = time.perf_counter() - call.started
        outcome = "ok" if failure is None else failure.kind
        r = call.reply
        m = self.metrics
        m.child(m.requests, r.route, outcome).inc()
        m.child(m.request_latency, r.route).observe(seconds)
        record, eid = self.trace.record, call.request.id
        for step, detail in notes:
            record(eid, step, **detail)
        record(eid, "answered", route=r.route, destination=r.destination, outcome=outcome,
               status=out.esbstatus, latency_ms=round(seconds * 1000, 3),
               **({"cache": "hit"} if call.cached else {}),
               **({"error": failure.detail[:500]} if failure else {}))
        return out
