"""Delivery workers: one per destination, each on its own queue(s) (the bulkhead).

For every envelope: take a concurrency slot, wait for the circuit breaker and a rate token,
call the outbound adapter with a timeout, then — delivered: ack; transient failure: publish a
delayed retry (durably, through the broker) and ack; permanent failure or spent retry budget:
publish to the dead-letter queue and ack. The original is acked only after its successor is
confirmed, so a crash in between delivers twice, never zero times.

A message whose connection was lost before its delivery started is dropped here, not
delivered: the broker queued it again when the channel went, and a delivery from here could
never be acked (a sure duplicate). That check is made once it has a slot and again once the
breaker and the rate limit let it through.

Ordered destinations consume one partition queue each with prefetch 1 and retry in place (the
envelope stays un-acked while it waits), so no later envelope of the same key overtakes it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from esb.adapters.spec import Outbound, SendResult
from esb.bus.broker.base import DEAD_LETTER, Bus, Message, destination_addresses
from esb.bus.config.model import DeliveryConfig
from esb.bus.deadletter import DELIVERY, dead_letter
from esb.bus.deadline import Deadlines
from esb.bus.envelope import Attempt, Envelope
from esb.bus.errors import BusError, PermanentError, PublishRejected, TransientError
from esb.bus.reply import Reply, failure_envelope, failure_of, reply_envelope
from esb.bus.runtime.breaker import BreakerSettings, CircuitBreaker
from esb.bus.runtime.fleet import FleetLimits
from esb.bus.runtime.logs import SecretRedactor, bind_message, unbind_message
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.ratelimit import TokenBucket
from esb.bus.runtime.retry import RetryPolicy, first_seen
from esb.bus.runtime.trace import MemoryTrace, TraceRecorder

log = structlog.get_logger("esb.delivery")


@dataclass(frozen=True)
class Outcome:
    kind: str  # "delivered" | "transient" | "permanent" | "unavailable" (request refused)
    #: The attempt as the envelope records it; only failures are recorded (and built).
    attempt: Attempt | None = None
    retry_after: float | None = None
    #: What ``Outbound.request`` answered (request/reply).
    reply: Reply | None = None
    #: The protocol fault the destination answered with, if any (request/reply maps it).
    fault: str | None = None

    @property
    def error(self) -> str | None:
        return self.attempt.error if self.attempt is not None else None


DELIVERED = Outcome("delivered")
#: Characters of a failure's text kept in its attempt record, trace and dead letter.
MAX_ERROR = 500
#: Not attempted: the worker began draining while the envelope waited for the breaker.
HELD = Outcome("held")

#: Longest description from an outbound side kept in the trace (a plugin could return anything).
_STATUS_TEXT_MAX = 80


def delivered_status(sent: SendResult) -> int | str:
    """The ``status`` of a ``delivered`` trace step from what ``Outbound.send`` returned: its
    status code, its short description (cut to :data:`_STATUS_TEXT_MAX`), or ``"accepted"``
    when it returned nothing."""
    if sent is None:
        return "accepted"
    if isinstance(sent, int):
        return sent
    text = str(sent)
    return text if len(text) <= _STATUS_TEXT_MAX else text[:_STATUS_TEXT_MAX - 1] + "…"


#: Failed breaker probes an envelope keeps per destination (the oldest go first): a day-long
#: outage must not grow it by thousands of records (its trace keeps every one).
MAX_PROBES = 20


def _bounded(attempts: list[Attempt], destination: str) -> list[Attempt]:
    probes = [i for i, a in enumerate(attempts) if a.probe and a.destination == destination]
    if len(probes) <= MAX_PROBES:
        return attempts
    drop = set(probes[:len(probes) - MAX_PROBES])
    return [a for i, a in enumerate(attempts) if i not in drop]


class DeliveryWorker:
    def __init__(self, destination: str, outbound: Outbound, bus: Bus, cfg: DeliveryConfig,
                 metrics: Metrics, instance: str, prefetch: int,
                 trace: TraceRecorder | None = None,
                 redactor: SecretRedactor | None = None,
                 fleet: FleetLimits | None = None) -> None:
        """``fleet``: where ``scope: fleet`` limits are shared (none: they hold here alone)."""
        self.destination = destination
        self.redactor = redactor or SecretRedactor()
        self.trace: TraceRecorder = trace if trace is not None else MemoryTrace(instance)
        self.outbound = outbound
        self.bus = bus
        self.cfg = cfg
        self.policy = RetryPolicy.from_config(cfg)
        self.metrics = metrics
        self.instance = instance
        self.ordered = cfg.ordered is not None
        self.prefetch = 1 if self.ordered else max(prefetch, cfg.concurrency)
        self.addresses = destination_addresses(
            destination, cfg.ordered.partitions if cfg.ordered else 0)
        self.address = self.addresses[0] if not self.ordered else f"dest.{destination}"
        self._slots = asyncio.Semaphore(cfg.concurrency)
        # One sweeper for every call's time limit (a timer per call costs ~6 µs a message);
        # a limit fires up to a quarter of itself (at most 1 s) late.
        self._deadlines = Deadlines(min(1.0, cfg.timeout / 4))
        shared = fleet if cfg.scope == "fleet" else None
        self._bucket: TokenBucket | None = None
        if cfg.rate_limit:
            self._bucket = shared.bucket(destination, cfg.rate_limit, cfg.rate_burst) \
                if shared else TokenBucket(cfg.rate_limit, cfg.rate_burst)
        self.breaker = CircuitBreaker(BreakerSettings(
            cfg.breaker.failures, cfg.breaker.failure_rate, cfg.breaker.window,
            cfg.breaker.cooldown)) if cfg.breaker else None
        if shared is not None and self.breaker is not None:
            shared.breaker(destination, self.breaker)
        # Bound once: labels() is a locked dict lookup, paid per message otherwise.
        m = metrics
        m.watch(m.in_flight.labels(destination), lambda: self._in_flight)
        self._m_latency = m.child(m.delivery_latency, destination)
        self._m_delivered = m.child(m.delivered, destination)
        self._m_end_to_end = m.child(m.end_to_end, destination)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._drain_started = asyncio.Event()

    async def start(self) -> None:
        for address in self.addresses:
            await self.bus.consume(address, self.handle, self.prefetch)

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {"in_flight": self._in_flight,
                                  "breaker": self.breaker.state if self.breaker else "off",
                                  "ordered": self.ordered, "scope": self.cfg.scope}
        if self._bucket is not None:
            out["rate_limit"] = round(self._bucket.rate, 3)  # this instance's share
        return out

    async def drain(self, timeout: float) -> bool:
        """Stop starting deliveries; wait for the ones in progress. True if all finished."""
        self._draining = True
        self._drain_started.set()  # envelopes waiting for an open breaker go back now
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def handle(self, msg: Message) -> None:
        if self._draining:
            msg.requeue()
            return
        async with self._slots:
            if self._draining:
                msg.requeue()
                return
            if not msg.alive:
                return  # its channel is gone: the broker delivers it again
            self._in_flight += 1
            self._idle.clear()
            env = msg.envelope
            # Every line logged for this delivery (the adapter's own included) names it.
            token = bind_message({"envelope_id": env.id, "correlation_id": env.correlationid,
                                  "route": env.esbroute, "destination": self.destination})
            try:
                if env.esbreplyto is not None:
                    await self._answer(msg)
                elif self.ordered:
                    await self._deliver_in_place(msg)
                else:
                    await self._settle(msg, env, await self._attempt(env, msg))
            finally:
                unbind_message(token)
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

    async def _attempt(self, env: Envelope, msg: Message, limit: float | None = None
                       ) -> Outcome:
        """One call to the destination, gated by breaker and rate limit; never raises.
        :data:`HELD` when the breaker held it until a drain, or ``msg`` died meanwhile.

        ``limit``: a request/reply call (``Outbound.request``) whose caller waits at most that
        many more seconds: an open breaker refuses it at once instead of holding it."""
        probe = False
        request = limit is not None
        if self.breaker is not None and request:
            wait = self.breaker.refuses()
            if wait is not None:
                return Outcome("unavailable", retry_after=wait)
            probe = self.breaker.state == "half-open"
        elif self.breaker is not None:
            if self.breaker.state == "closed":
                await self.breaker.wait()  # returns at once: no race to set up
            elif not await self._breaker_or_drain():
                return HELD
            else:
                probe = self.breaker.state == "half-open"
        if self._bucket is not None:
            await self._bucket.take()
        if not msg.alive:
            return HELD
        wall = time.time()
        started = time.perf_counter()
        reply: Reply | None = None
        status: int | None = None
        retry_after: float | None = None
        sent: SendResult = None
        fault: str | None = None
        timeout = self.cfg.timeout if limit is None else max(0.001, min(self.cfg.timeout, limit))
        try:
            if request:
                reply = await self._deadlines.run(self.outbound.request(env),  # type: ignore[attr-defined]
                                                  timeout)
                sent = reply.status
            else:
                sent = await self._deadlines.run(self.outbound.send(env), timeout)
        except (TransientError, PermanentError) as exc:
            kind = "permanent" if isinstance(exc, PermanentError) else "transient"
            error, status, retry_after = str(exc), exc.status, exc.retry_after
            fault = exc.fault
        except TimeoutError:
            kind, error = "transient", f"no answer within {timeout:g}s"
        except Exception as exc:  # an adapter bug: retried, bounded by the retry budget
            kind, error = "transient", f"{type(exc).__name__}: {exc}"
            log.exception("outbound adapter raised an untranslated error",
                          destination=self.destination, envelope_id=env.id)
        else:
            kind, error = "delivered", None
        latency = time.perf_counter() - started
        if self.breaker is not None:
            # A permanent failure is the envelope's fault, and a 429 is the destination
            # pacing us (its Retry-After is honoured): neither says it is unhealthy.
            self.breaker.record(kind != "transient" or status == 429)
        self._m_latency.observe(latency)
        ms = round(latency * 1000, 3)
        n = 1 + sum(1 for a in env.esbattempts if a.destination == self.destination)
        done = wall + latency
        if kind == "delivered":
            self.trace.record(env.id, "delivered", at=done, destination=self.destination,
                              status=delivered_status(sent), latency_ms=ms, attempt=n)
            self._m_delivered.inc()
            self._m_end_to_end.observe(max(0.0, done - first_seen(env).timestamp()))
            return Outcome("delivered", reply=reply) if request else DELIVERED
        error = self._clean(error)
        self.trace.record(env.id, "attempt", at=done, destination=self.destination,
                          outcome=kind, status=status, latency_ms=ms, error=error, attempt=n)
        self.metrics.failed.labels(self.destination, kind).inc()
        return Outcome(kind, Attempt(at=datetime.fromtimestamp(wall, UTC),
                                     destination=self.destination, outcome=kind, status=status,
                                     latency_ms=ms, error=error, probe=probe), retry_after,
                       fault=fault)

    async def _answer(self, msg: Message) -> None:
        """A request/reply call: call the destination (retrying within the caller's deadline,
        as the destination's policy says), send the answer back, then ack. Never retried past
        the deadline, never dead-lettered: the caller hears every failure."""
        env = msg.envelope
        assert env.esbreplyto is not None
        taken = time.perf_counter()
        deadline = (env.esbdeadline or 0) / 1000
        if msg.redelivered:
            # The instance that took it first died (or gave it back): it may have called the
            # destination. Calling again could do it twice; the caller hears it instead.
            reply = failure_envelope(
                env, "interrupted", f"the esb instance calling {self.destination!r} for this "
                "request stopped before it answered; the destination may or may not have "
                f"received it (idempotency key {env.key!r})", 502,
                destination=self.destination)
        elif not callable(getattr(self.outbound, "request", None)):
            reply = failure_envelope(
                env, "unanswerable", f"destination {self.destination!r} cannot answer "
                "requests (its adapter has no request side); use it in one-way routes", 502,
                destination=self.destination)
        elif deadline - time.time() <= 0:
            self.trace.record(env.id, "replied", destination=self.destination,
                              outcome="expired")
            msg.ack()  # the caller stopped waiting: the destination is not called at all
            return
        else:
            reply = await self._request(msg, env, deadline)
        # Stamped when the reply leaves, so it sorts before the caller's ``answered``.
        sent = time.time()
        latency = round((time.perf_counter() - taken) * 1000, 3)
        step = {"destination": self.destination, "status": reply.esbstatus,
                "outcome": "ok" if reply.esberror is None else (reply.data or {}).get("kind"),
                "latency_ms": latency}

        def returned(reason: str) -> None:
            # The broker took the reply, then found no caller's queue for it: the trace
            # says so after the ``replied`` it already holds (the last one counts).
            self.trace.record(env.id, "replied", **step,
                              error=f"the caller is gone (the broker returned the reply: "
                                    f"{reason})")

        error: str | None = None
        try:
            await self.bus.reply(env.esbreplyto, reply, returned)
        except PublishRejected:
            error = "the caller is gone"
            log.info("the caller is gone; reply dropped", destination=self.destination,
                     envelope_id=env.id)
        except BusError as exc:
            error = self._clean(f"could not send the reply: {exc}")
            log.warning("could not send a reply", destination=self.destination,
                        envelope_id=env.id, error=str(exc))
        self.trace.record(env.id, "replied", at=sent, **step,
                          **({"error": error} if error else {}))
        msg.ack()

    async def _request(self, msg: Message, env: Envelope, deadline: float) -> Envelope:
        """Call the destination until it answers, fails for good, or the deadline comes."""
        tried = 0
        while True:
            outcome = await self._attempt(env, msg, deadline - time.time())
            tried += 1
            if outcome is HELD:  # its channel died: the broker hands it to another instance
                return failure_envelope(env, "interrupted", "the esb instance holding this "
                                        "request lost its broker channel before calling "
                                        f"{self.destination!r}", 502,
                                        destination=self.destination)
            if outcome.kind == "delivered":
                assert outcome.reply is not None
                return self._reply(env, outcome.reply)
            if outcome.kind == "unavailable":
                return failure_envelope(
                    env, "unavailable", f"destination {self.destination!r} is failing (its "
                    "circuit breaker is open); retry later", 503,
                    destination=self.destination, retry_after=outcome.retry_after)
            left = deadline - time.time()
            error = outcome.error or "failed"
            if left <= 0:
                return failure_envelope(env, "timeout", f"{self.destination!r} did not answer "
                                        f"before the caller's deadline: {error}", 504,
                                        destination=self.destination)
            delay = self._next_delay(env, outcome, tried)
            if delay is None or delay >= left or self._draining:
                kind, status = failure_of(outcome.attempt.status if outcome.attempt else None,
                                          outcome.fault)
                return failure_envelope(env, kind, outcome.fault or error, status,
                                        destination=self.destination)
            self.trace.record(env.id, "retry-scheduled", destination=self.destination,
                              attempt=tried, retry_in=delay)
            await asyncio.sleep(delay)

    def _reply(self, env: Envelope, reply: Reply) -> Envelope:
        if len(reply.body) > self.cfg.max_reply:
            return failure_envelope(env, "too-large", f"the reply from {self.destination!r} "
                                    f"is {len(reply.body)} bytes; at most "
                                    f"{self.cfg.max_reply} are passed on "
                                    "(delivery.max_reply)", 502, destination=self.destination)
        return reply_envelope(env, reply, self.destination)

    def _counted(self, attempts: list[Attempt]) -> int:
        """Attempts at this destination that count against ``max_attempts`` (not the probes
        of a half-open breaker: while the destination is down, envelopes wait for it)."""
        return sum(1 for a in attempts if a.destination == self.destination and not a.probe)

    def _clean(self, error: str | None) -> str | None:
        """A failure's text as traces and dead letters keep it: any configured secret the
        destination echoed replaced by ``***`` (adapters scrub their own credentials; this
        catches the rest, e.g. a header value), then cut to a readable length — in that
        order, so a cut never leaves the start of a secret."""
        if error is None:
            return None
        error = self.redactor.scrub(error)
        return error if len(error) <= MAX_ERROR else error[:MAX_ERROR - 1] + "…"

    async def _breaker_or_drain(self) -> bool:
        """Wait for the (open) breaker to let a call through; False if draining began first:
        a delivery that never started must not hold a graceful stop for a whole cooldown."""
        assert self.breaker is not None
        if self._draining:
            return False
        waiter = asyncio.ensure_future(self.breaker.wait())
        stopping = asyncio.ensure_future(self._drain_started.wait())
        try:
            await asyncio.wait((waiter, stopping), return_when=asyncio.FIRST_COMPLETED)
            return waiter.done() and not waiter.cancelled()
        finally:  # whichever lost (or both, when this task itself is cancelled)
            if not waiter.done():
                waiter.cancel()
            stopping.cancel()

    def _next_delay(self, env: Envelope, outcome: Outcome, tried: int) -> float | None:
        """How long until the next try after ``tried`` attempts (None: no retry)."""
        if outcome.kind != "transient":
            return None
        return self.policy.next_delay(tried, first_seen(env), outcome.retry_after)

    async def _settle(self, msg: Message, env: Envelope, outcome: Outcome) -> None:
        if outcome.kind == "delivered":
            msg.ack()
            return
        if outcome is HELD:
            msg.requeue()
            return
        assert outcome.attempt is not None  # failures carry their attempt
        attempts = _bounded([*env.esbattempts, outcome.attempt], self.destination)
        delay = self._next_delay(env, outcome, self._counted(attempts))
        try:
            if delay is not None:
                nxt = env.model_copy(update={"esbattempts": attempts})
                used = await self.bus.publish_delayed(self.address, nxt, delay)
                self.metrics.retried.labels(self.destination).inc()
                self.trace.record(env.id, "retry-scheduled", destination=self.destination,
                                  attempt=len(attempts), retry_in=used)
                log.info("delivery failed; retry scheduled", destination=self.destination,
                         envelope_id=env.id, attempt=len(attempts),
                         error=outcome.error, retry_in=used)
            else:
                await self._dead_letter(env, outcome, attempts)
        except BusError as exc:
            # Could not hand it on: leave it un-acked; the broker redelivers it (after a
            # reconnect), so nothing is lost. Pause briefly so a live channel does not spin.
            log.warning("could not schedule retry; left on the queue",
                        destination=self.destination, envelope_id=env.id, error=str(exc))
            await asyncio.sleep(1.0)
            msg.requeue()
            return
        msg.ack()

    async def _deliver_in_place(self, msg: Message) -> None:
        env = msg.envelope
        while True:
            outcome = await self._attempt(env, msg)
            if outcome.kind == "delivered" or outcome is HELD:
                # (held: the attempts made here are lost with it, they were local)
                await self._settle(msg, env, outcome)
                return
            assert outcome.attempt is not None
            attempts = _bounded([*env.esbattempts, outcome.attempt], self.destination)
            env = env.model_copy(update={"esbattempts": attempts})
            delay = self._next_delay(env, outcome, self._counted(attempts))
            if delay is None or self._draining:
                if delay is not None:  # draining: give it back, order intact
                    msg.requeue()
                    return
                break
            log.info("ordered delivery failed; retrying in place",
                     destination=self.destination, envelope_id=env.id, retry_in=delay)
            self.trace.record(env.id, "retry-scheduled", destination=self.destination,
                              attempt=len(attempts), retry_in=delay)
            await asyncio.sleep(delay)
        try:
            await self._dead_letter(env, outcome, env.esbattempts)
        except BusError:
            await asyncio.sleep(1.0)
            msg.requeue()
            return
        msg.ack()

    async def _dead_letter(self, env: Envelope, outcome: Outcome,
                           attempts: list[Attempt]) -> None:
        tried = self._counted(attempts)
        reason = outcome.error if outcome.kind == "permanent" else \
            f"retry budget spent after {tried} attempts: {outcome.error}"
        dead = dead_letter(env, reason or "", stage=DELIVERY, instance=self.instance,
                           destination=self.destination, attempts=attempts)
        await self.bus.publish(DEAD_LETTER, dead)
        self.metrics.dead_lettered.labels(self.destination).inc()
        self.trace.record(env.id, "dead-lettered", destination=self.destination, error=reason,
                          attempts=tried)
        log.warning("delivery failed; dead-lettered", destination=self.destination,
                    envelope_id=env.id, attempts=tried, error=reason)
