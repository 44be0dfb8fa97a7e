"""The retry policy and its helpers."""

from __future__ import annotations

import random
from datetime import timedelta

from esb.bus.broker.base import RETRY_TIERS, retry_tier
from esb.bus.envelope import Envelope, Hop, utcnow
from esb.bus.runtime.retry import RetryPolicy, first_seen


def policy(**kw: float) -> RetryPolicy:
    base = {"max_attempts": 5, "max_age": 3600, "initial": 1, "max_delay": 60,
            "multiplier": 2}
    return RetryPolicy(**{**base, **kw})  # type: ignore[arg-type]


def test_full_jitter_stays_within_the_exponential_cap() -> None:
    rng = random.Random(7)
    p = policy()
    for attempt in range(1, 5):
        cap = min(60, 2 ** (attempt - 1))
        for _ in range(200):
            d = p.next_delay(attempt, utcnow(), rng=rng)
            assert d is not None and 0.5 <= d <= cap


def test_budget_ends_at_max_attempts_and_max_age() -> None:
    p = policy(max_attempts=3, max_age=10)
    assert p.next_delay(3, utcnow()) is None
    assert p.next_delay(1, utcnow() - timedelta(seconds=20)) is None


def test_retry_after_wins_when_longer() -> None:
    assert policy().next_delay(1, utcnow(), retry_after=7) == 7


def test_a_delay_parks_in_the_largest_tier_that_does_not_overshoot() -> None:
    assert retry_tier(0.1) == RETRY_TIERS[0]  # below the smallest: waited out in process
    assert retry_tier(2) == 2
    assert retry_tier(2.5) == 2  # then 0.5 more
    assert retry_tier(7199) == 3600  # twice, then the rest
    assert retry_tier(10**6) == RETRY_TIERS[-1]


def test_max_age_restarts_at_a_replay() -> None:
    """A replayed envelope gets a fresh budget: the age counts from the latest replay."""
    old = utcnow() - timedelta(hours=30)
    env = Envelope(source="s", type="t", esbhops=[
        Hop(at=old, step="accepted"), Hop(at=old, step="dead-lettered"),
        Hop(at=utcnow(), step="replayed")])
    assert first_seen(env) > old
    assert policy(max_age=86400).next_delay(1, first_seen(env)) is not None
    accepted_only = env.model_copy(update={"esbhops": env.esbhops[:1]})
    assert first_seen(accepted_only) == old
