"""Fleet-wide limits through the real broker: three instances' presence shares a rate out
among them (and back when one leaves), and a breaker one instance opens holds the others back
until the first success closes it everywhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from esbtest.waiting import until

from esb.bus.runtime.breaker import BreakerSettings, CircuitBreaker
from esb.bus.runtime.fleet import FleetLimits
from esb.bus.runtime.presence import Presence

pytestmark = pytest.mark.rabbitmq


def snapshot() -> dict[str, Any]:
    return {"destinations": {"partner": {"breaker": "closed"}}}


@pytest.fixture
async def fleet(rabbit_url: str, prefix: str) -> AsyncIterator[list[tuple[Presence,
                                                                         FleetLimits]]]:
    members = []
    for i in range(3):
        presence = Presence(rabbit_url, prefix, f"i{i}", snapshot, timeout=5)
        members.append((presence, FleetLimits(presence)))
    for presence, _ in members:
        await presence.start()
    yield members
    for presence, limits in members:
        await limits.close()
        await presence.close()



async def test_the_rate_is_shared_among_live_instances(fleet: Any) -> None:
    buckets = [limits.bucket("partner", 21.0, None) for _, limits in fleet]
    # The instances settle at the same time, as separate daemons would (one after the other
    # costs three settling times).
    await asyncio.gather(*(limits.settle() for _, limits in fleet))
    for _, limits in fleet:
        limits.start()
    assert await until(lambda: all(b.rate == 7.0 for b in buckets)), \
        [b.rate for b in buckets]
    assert all(b.burst == 7.0 for b in buckets)  # one second's worth, shared too
    await fleet[2][0].close()  # says goodbye: the others take over its share
    assert await until(lambda: buckets[0].rate == buckets[1].rate == 10.5)


async def test_shares_follow_joins_and_goodbyes_as_they_arrive(rabbit_url: str, prefix: str,
                                                                fleet: Any) -> None:
    # No periodic recount here (start() is never called): only the roster's news moves them.
    buckets = [limits.bucket("partner", 20.0, None) for _, limits in fleet]
    await asyncio.gather(*(limits.settle() for _, limits in fleet))
    assert [b.rate for b in buckets] == [20 / 3] * 3
    newcomer = Presence(rabbit_url, prefix, "i3", snapshot, timeout=5)
    await newcomer.start()
    try:
        assert await until(lambda: all(b.rate == 5.0 for b in buckets), 5), \
            [b.rate for b in buckets]
    finally:
        await newcomer.close()
    assert await until(lambda: all(b.rate == 20 / 3 for b in buckets), 5), \
        [b.rate for b in buckets]


async def test_a_breaker_opened_by_one_instance_holds_the_others(fleet: Any) -> None:
    # A short cooldown: the end of the test waits it out (the others move their breakers
    # within the 2 s the bounds below leave for that).
    cooldown = 3.0
    settings = BreakerSettings(failures=3, cooldown=cooldown)
    breakers = [limits.breaker("partner", CircuitBreaker(settings)) for _, limits in fleet]
    for _ in range(3):
        breakers[0].record(False)  # only the first instance saw the failures
    assert breakers[0].state == "open"
    assert await until(lambda: all(b.state == "open" for b in breakers[1:]), 5)
    # They hold for the cooldown the opener had left, not a fresh one.
    assert all(cooldown - 2 < b.cooldown_left() <= cooldown for b in breakers[1:])
    waiting = asyncio.ensure_future(breakers[1].wait())
    await asyncio.sleep(0.3)
    assert not waiting.done(), "an instance sent while the fleet's breaker was open"
    # The first probe that succeeds anywhere closes the breaker everywhere. (A forced open
    # never shortens what is left, so the probe comes once the opener's cooldown ends.)
    await breakers[2].wait()  # half-open: the probe
    breakers[2].record(True)
    assert await until(lambda: all(b.state == "closed" for b in breakers), 5)
    await asyncio.wait_for(waiting, 2)
