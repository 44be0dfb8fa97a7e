"""Per-destination retry policy: max attempts, max age, exponential backoff with full jitter,
and the destination's own ``Retry-After`` when it gave one."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from esb.bus.config.model import DeliveryConfig
from esb.bus.envelope import Envelope, utcnow


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_age: float
    initial: float
    max_delay: float
    multiplier: float

    @classmethod
    def from_config(cls, cfg: DeliveryConfig) -> RetryPolicy:
        return cls(cfg.max_attempts, cfg.max_age, cfg.backoff.initial, cfg.backoff.max,
                   cfg.backoff.multiplier)

    def next_delay(self, attempts: int, first_seen: datetime,
                   retry_after: float | None = None, rng: random.Random | None = None
                   ) -> float | None:
        """Seconds to wait before attempt ``attempts + 1``, or None when the budget is spent.

        ``attempts`` counts the attempts made so far (≥ 1). Full jitter: uniform in
        [0, min(max, initial * multiplier^(attempts-1))], never below ``initial`` / 2 so a
        failing destination is not hammered; a ``Retry-After`` wins when it is longer.
        """
        if attempts >= self.max_attempts:
            return None
        cap = min(self.max_delay, self.initial * self.multiplier ** (attempts - 1))
        delay = max(self.initial / 2, (rng or random).uniform(0, cap))
        if retry_after is not None:
            delay = max(delay, retry_after)
        age = (utcnow() - first_seen).total_seconds()
        if age + delay > self.max_age:
            return None
        return delay


def first_seen(envelope: Envelope) -> datetime:
    """When the max-age clock started: the latest replay of the envelope (an operator's replay
    gives it a fresh budget, as it gives it a fresh attempt history), else its acceptance."""
    accepted: datetime | None = None
    for hop in envelope.esbhops:
        if hop.step == "replayed" or (hop.step == "accepted" and accepted is None):
            accepted = hop.at
    return accepted or envelope.time
