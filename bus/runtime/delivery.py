"""Delivery workers: one per destination, each on its own queue (the bulkhead).

For every envelope: take a concurrency slot and a rate token, call the outbound adapter with a
timeout, then — delivered: ack; transient failure: publish a delayed retry (durably, through the
broker) and ack; permanent failure or spent retry budget: publish to the dead-letter queue and
ack. The original is acked only after its successor is confirmed, so a crash in between
delivers twice, never zero times.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from esb.adapters.spec import Outbound
from esb.bus.broker.base import DEAD_LETTER, Bus, Message, destination_address
from esb.bus.config.model import DeliveryConfig
from esb.bus.envelope import Attempt, Hop, utcnow
from esb.bus.errors import BusError, PermanentError, TransientError
from esb.bus.runtime.metrics import Metrics
from esb.bus.runtime.ratelimit import TokenBucket
from esb.bus.runtime.retry import RetryPolicy, first_seen

log = structlog.get_logger("esb.delivery")


class DeliveryWorker:
    def __init__(self, destination: str, outbound: Outbound, bus: Bus, cfg: DeliveryConfig,
                 metrics: Metrics, instance: str, prefetch: int) -> None:
        self.destination = destination
        self.address = destination_address(destination)
        self.outbound = outbound
        self.bus = bus
        self.cfg = cfg
        self.policy = RetryPolicy.from_config(cfg)
        self.metrics = metrics
        self.instance = instance
        self.prefetch = max(prefetch, cfg.concurrency)
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._bucket = TokenBucket(cfg.rate_limit) if cfg.rate_limit else None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    async def start(self) -> None:
        await self.bus.consume(self.address, self.handle, self.prefetch)

    async def drain(self, timeout: float) -> bool:
        """Stop starting deliveries; wait for the ones in progress. True if all finished."""
        self._draining = True
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
            self._in_flight += 1
            self._idle.clear()
            try:
                if self._bucket is not None:
                    await self._bucket.take()
                await self._deliver(msg)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

    async def _deliver(self, msg: Message) -> None:
        env = msg.envelope
        labels = (self.destination,)
        started = time.perf_counter()
        at = utcnow()
        status: int | None = None
        retry_after: float | None = None
        try:
            await asyncio.wait_for(self.outbound.send(env), self.cfg.timeout)
        except (TransientError, PermanentError) as exc:
            outcome = "permanent" if isinstance(exc, PermanentError) else "transient"
            error, status, retry_after = str(exc), exc.status, exc.retry_after
        except TimeoutError:
            outcome, error = "transient", f"no answer within {self.cfg.timeout:g}s"
        except Exception as exc:  # an adapter bug: retried, bounded by the retry budget
            outcome, error = "transient", f"{type(exc).__name__}: {exc}"
            log.exception("outbound adapter raised an untranslated error",
                          destination=self.destination, envelope_id=env.id)
        else:
            outcome, error = "delivered", None
        latency = time.perf_counter() - started
        self.metrics.delivery_latency.labels(*labels).observe(latency)
        attempt = Attempt(at=at, destination=self.destination, outcome=outcome, status=status,
                          latency_ms=round(latency * 1000, 3), error=error)
        if outcome == "delivered":
            msg.ack()
            self.metrics.delivered.labels(*labels).inc()
            self.metrics.end_to_end.labels(*labels).observe(
                max(0.0, (utcnow() - first_seen(env)).total_seconds()))
            return
        self.metrics.failed.labels(self.destination, outcome).inc()
        attempts = [*env.esbattempts, attempt]
        tried = sum(1 for a in attempts if a.destination == self.destination)
        delay = None
        if outcome == "transient":
            delay = self.policy.next_delay(tried, first_seen(env), retry_after)
        try:
            if delay is not None:
                nxt = env.model_copy(update={"esbattempts": attempts})
                used = await self.bus.publish_delayed(self.address, nxt, delay)
                self.metrics.retried.labels(*labels).inc()
                log.info("delivery failed; retry scheduled", destination=self.destination,
                         envelope_id=env.id, attempt=tried, error=error, retry_in=used)
            else:
                reason = error if outcome == "permanent" else \
                    f"retry budget spent after {tried} attempts: {error}"
                dead = env.model_copy(update={
                    "esbattempts": attempts, "esberror": reason,
                    "esbhops": [*env.esbhops, Hop(at=utcnow(), step="dead-lettered",
                                                  instance=self.instance,
                                                  detail={"destination": self.destination})]})
                await self.bus.publish(DEAD_LETTER, dead)
                self.metrics.dead_lettered.labels(*labels).inc()
                log.warning("delivery failed; dead-lettered", destination=self.destination,
                            envelope_id=env.id, attempts=tried, error=reason)
        except BusError as exc:
            # Could not hand it on: leave it un-acked; the broker redelivers it (after a
            # reconnect), so nothing is lost. Pause briefly so a live channel does not spin.
            log.warning("could not schedule retry; left on the queue",
                        destination=self.destination, envelope_id=env.id, error=str(exc))
            await asyncio.sleep(1.0)
            msg.requeue()
            return
        msg.ack()
