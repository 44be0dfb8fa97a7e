"""The circuit breaker's state machine."""

from __future__ import annotations

import asyncio
import time

from esb.bus.runtime.breaker import BreakerSettings, CircuitBreaker


async def test_opens_after_consecutive_failures_and_probes_once() -> None:
    b = CircuitBreaker(BreakerSettings(failures=3, cooldown=0.2))
    for _ in range(3):
        await b.wait()
        b.record(False)
    assert b.state == "open"
    waiter = asyncio.create_task(b.wait())
    await asyncio.sleep(0.05)
    assert not waiter.done(), "an open breaker holds calls back"
    await asyncio.wait_for(waiter, 1)
    assert b.state == "half-open"
    second = asyncio.create_task(b.wait())
    await asyncio.sleep(0.05)
    assert not second.done(), "only one probe at a time"
    b.record(True)
    await asyncio.wait_for(second, 1)
    assert b.state == "closed"


async def test_failed_probe_reopens() -> None:
    b = CircuitBreaker(BreakerSettings(failures=1, cooldown=0.05))
    await b.wait()
    b.record(False)
    await b.wait()
    assert b.state == "half-open"
    b.record(False)
    assert b.state == "open" and b.opened_count == 2


async def test_failure_rate_trips_without_a_streak() -> None:
    b = CircuitBreaker(BreakerSettings(failures=100, failure_rate=0.5, window=10))
    for i in range(10):
        await b.wait()
        b.record(i % 2 == 0)
    assert b.state == "open"


async def test_successes_keep_it_closed() -> None:
    b = CircuitBreaker(BreakerSettings(failures=2))
    for _ in range(10):
        await b.wait()
        b.record(False)
        b.record(True)
    assert b.state == "closed"


async def test_a_graceful_stop_does_not_wait_out_an_open_breaker() -> None:
    """Envelopes waiting for an open breaker never started a delivery: draining gives them
    back to the queue at once instead of holding the stop for the whole cooldown."""
    from esb.bus.config.model import DeliveryConfig
    from esb.bus.envelope import Envelope
    from esb.bus.errors import TransientError
    from esb.bus.runtime.delivery import DeliveryWorker
    from esb.bus.runtime.metrics import Metrics

    class Down:
        async def start(self) -> None:
            return None

        async def send(self, envelope: Envelope) -> None:
            raise TransientError("503 Service Unavailable", status=503)

        async def stop(self) -> None:
            return None

    class Wire:
        async def publish_delayed(self, address: str, envelope: Envelope,
                                  delay: float) -> float:
            return delay

    class Taken:
        redelivered = False

        def __init__(self) -> None:
            self.envelope = Envelope(source="s", type="t", data={})
            self.result = ""

        def ack(self) -> None:
            self.result = "acked"

        def requeue(self) -> None:
            self.result = "requeued"

    cfg = DeliveryConfig.model_validate({"breaker": {"failures": 1, "cooldown": "60s"}})
    worker = DeliveryWorker("erp", Down(), Wire(), cfg, Metrics(), "i1", 100)  # type: ignore[arg-type]
    first, waiting = Taken(), Taken()
    await worker.handle(first)  # type: ignore[arg-type]
    assert first.result == "acked" and worker.breaker is not None
    assert worker.breaker.state == "open"  # the retry went to a tier queue
    held = asyncio.create_task(worker.handle(waiting))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert not held.done()  # waiting for the breaker, not burning an attempt
    t0 = time.monotonic()
    assert await worker.drain(5)
    assert time.monotonic() - t0 < 1
    await held
    assert waiting.result == "requeued"
