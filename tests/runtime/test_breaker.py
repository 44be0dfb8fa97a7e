"""The circuit breaker's state machine."""

from __future__ import annotations

import asyncio

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
