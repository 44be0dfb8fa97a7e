"""The token bucket: its burst is what ``rate_burst`` says, and a resize takes effect at once."""

from __future__ import annotations

import time

from esb.bus.runtime.ratelimit import TokenBucket


async def test_burst_then_rate() -> None:
    bucket = TokenBucket(20.0, burst=5)
    t0 = time.monotonic()
    for _ in range(5):
        await bucket.take()
    assert time.monotonic() - t0 < 0.1  # the burst goes at once
    for _ in range(4):
        await bucket.take()
    assert time.monotonic() - t0 >= 4 / 20 * 0.9  # then 20/s


async def test_default_burst_is_one_seconds_worth_and_resize_drops_extra_tokens() -> None:
    bucket = TokenBucket(10.0)
    assert bucket.burst == 10.0
    bucket.resize(2.0, 1.0)
    t0 = time.monotonic()
    await bucket.take()
    await bucket.take()  # the second waits for a token at 2/s
    assert time.monotonic() - t0 >= 0.4
