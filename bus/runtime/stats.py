"""Recent per-destination figures of the whole fleet, for the console's charts
(``GET /admin/stats``).

Every ``interval`` (the presence heartbeat's, 5 s) one sample is taken from what presence knows
of every live instance: per destination, the rates summed over instances, the delivery-call
latency percentiles of all of them together (their histogram windows added up before the
percentile is taken), deliveries in flight summed and the worst breaker state. ``keep`` samples
are kept (15 minutes by default), so a page opened now shows the last minutes at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from esb.bus.runtime.metrics import LATENCY_BOUNDS
from esb.bus.runtime.presence import COUNTERS, LATENCY_WINDOW, percentiles

#: Worst first: the state shown for a destination when instances disagree.
BREAKER_ORDER = ("open", "half-open", "closed", "off")


def fleet_sample(instances: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per destination, the fleet's figures from ``Presence.instances()``."""
    out: dict[str, dict[str, Any]] = {}
    windows: dict[str, list[int]] = {}
    for inst in instances:
        dests = inst.get("destinations")
        if not isinstance(dests, dict):
            continue
        for name, d in dests.items():
            if not isinstance(d, dict):
                continue
            agg = out.setdefault(name, {**{f"{k}_per_s": None for k in COUNTERS},
                                        "in_flight": 0, "breaker": None, "instances": 0})
            agg["instances"] += 1
            for key in COUNTERS:
                rate = d.get(f"{key}_per_s")
                if isinstance(rate, int | float):
                    agg[f"{key}_per_s"] = round((agg[f"{key}_per_s"] or 0.0) + rate, 3)
            if isinstance(d.get("in_flight"), int | float):
                agg["in_flight"] += d["in_flight"]
            agg["breaker"] = _worse(agg["breaker"], d.get("breaker"))
            window = d.get(LATENCY_WINDOW)
            if isinstance(window, list) and len(window) == len(LATENCY_BOUNDS):
                have = windows.setdefault(name, [0] * len(LATENCY_BOUNDS))
                windows[name] = [a + int(b) for a, b in zip(have, window, strict=True)]
    for name, agg in out.items():
        agg.update(percentiles(windows.get(name)))
    return out


def _worse(a: Any, b: Any) -> Any:
    if not isinstance(b, str):
        return a
    if not isinstance(a, str):
        return b
    rank = {s: i for i, s in enumerate(BREAKER_ORDER)}
    return a if rank.get(a, len(rank)) <= rank.get(b, len(rank)) else b


class StatsHistory:
    """A ring of fleet samples; :meth:`run` fills it until cancelled."""

    def __init__(self, instances: Callable[[], list[dict[str, Any]]], *,
                 interval: float = 5.0, keep: int = 180) -> None:
        self.instances = instances
        self.interval = interval
        self._samples: deque[dict[str, Any]] = deque(maxlen=keep)

    def sample(self) -> dict[str, Any]:
        entry = {"at": round(time.time(), 3), "destinations": fleet_sample(self.instances())}
        self._samples.append(entry)
        return entry

    def recent(self, seconds: float) -> list[dict[str, Any]]:
        """Samples of the last ``seconds``, oldest first (a fresh one is taken when the
        newest is older than an interval, so the answer is never stale)."""
        now = time.time()
        if not self._samples or now - self._samples[-1]["at"] > self.interval:
            self.sample()
        return [s for s in self._samples if s["at"] >= now - seconds]

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)
