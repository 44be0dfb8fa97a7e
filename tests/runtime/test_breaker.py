"""The circuit breaker's state machine."""

from __future__ import annotations

import asyncio
import time

from esb.bus.broker.base import DEAD_LETTER
from esb.bus.config.model import DeliveryConfig
from esb.bus.envelope import Envelope
from esb.bus.errors import TransientError
from esb.bus.runtime.breaker import BreakerSettings, CircuitBreaker
from esb.bus.runtime.delivery import DeliveryWorker
from esb.bus.runtime.metrics import Metrics


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
    changes: list[str] = []
    b = CircuitBreaker(BreakerSettings(failures=1, cooldown=0.05), on_change=changes.append)
    await b.wait()
    b.record(False)
    await b.wait()
    assert b.state == "half-open"
    b.record(False)
    assert b.state == "open" and changes == ["open", "open"]


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


class Down:
    """An outbound side whose destination is down."""

    async def start(self) -> None:
        return None

    async def send(self, envelope: Envelope) -> None:
        raise TransientError("503 Service Unavailable", status=503)

    async def stop(self) -> None:
        return None


async def test_a_graceful_stop_does_not_wait_out_an_open_breaker() -> None:
    """Envelopes waiting for an open breaker never started a delivery: draining gives them
    back to the queue at once instead of holding the stop for the whole cooldown."""

    class Wire:
        async def publish_delayed(self, address: str, envelope: Envelope,
                                  delay: float) -> float:
            return delay

    class Taken:
        redelivered = False
        alive = True

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


async def test_probes_of_a_half_open_breaker_do_not_use_up_attempts() -> None:
    """A destination that stays down: after the breaker opens, each retry is the one probe
    the breaker lets through. Those failures are marked as probes and do not count against
    max_attempts, so the envelope keeps waiting (within max_age) instead of being
    dead-lettered after a few minutes of outage."""

    class Wire:
        def __init__(self) -> None:
            self.retried: list[Envelope] = []
            self.dead: list[Envelope] = []

        async def publish(self, address: str, envelope: Envelope) -> None:
            assert address == DEAD_LETTER
            self.dead.append(envelope)

        async def publish_delayed(self, address: str, envelope: Envelope,
                                  delay: float) -> float:
            self.retried.append(envelope)
            return delay

    class Taken:
        redelivered = False
        alive = True

        def __init__(self, envelope: Envelope) -> None:
            self.envelope = envelope

        def ack(self) -> None:
            return None

        def requeue(self) -> None:
            raise AssertionError("not draining")

    cfg = DeliveryConfig.model_validate({"max_attempts": 2, "max_age": "1h",
                                         "breaker": {"failures": 1, "cooldown": "10ms"}})
    wire = Wire()
    worker = DeliveryWorker("erp", Down(), wire, cfg, Metrics(), "i1", 100)  # type: ignore[arg-type]
    env = Envelope(source="s", type="t", data={})
    for _ in range(6):  # the broker handing each retry back
        await worker.handle(Taken(env))  # type: ignore[arg-type]
        assert not wire.dead, wire.dead[0].esberror
        env = wire.retried[-1]
    attempts = env.esbattempts
    assert len(attempts) == 6
    assert [a.probe for a in attempts] == [False] + [True] * 5
    assert Envelope.from_json(env.to_json()).esbattempts == attempts  # survives the bus
    # a long outage: the envelope keeps the latest MAX_PROBES probes, not thousands
    from esb.bus.runtime.delivery import MAX_PROBES
    for _ in range(MAX_PROBES + 5):
        await worker.handle(Taken(env))  # type: ignore[arg-type]
        env = wire.retried[-1]
    assert not wire.dead
    kept = env.esbattempts
    assert [a.probe for a in kept] == [False] + [True] * MAX_PROBES
    assert kept[-1].at >= attempts[-1].at
