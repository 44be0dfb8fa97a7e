"""Fleet-wide limits (``delivery.scope: fleet``): a destination's ``rate_limit`` and circuit
breaker held by every instance on the bus together, through the broker.

Rate: each instance's token bucket runs at ``rate_limit / N`` (and ``rate_burst / N``, at least
1 token), N the live instances that deliver to the destination — known from presence
heartbeats (:mod:`esb.bus.runtime.presence`), recounted as soon as an instance joins or says
goodbye, and every :data:`RECOUNT` seconds besides (for instances that fall silent). The sum
over the fleet is the declared rate, with no broker operation per message. What it costs:

* an instance that joins runs alone for a moment: fleet-scoped workers start only once this
  instance's presence has been answered (:data:`SETTLE`), so it already counts the others;
* an instance killed without a goodbye is counted until its heartbeats expire (15 s): the
  others send less than the rate meanwhile, never more;
* the shares are even, the work may not be: an instance with nothing queued leaves its share
  unused. Competing consumers with a backlog spread it evenly.

Breaker: when a fleet-scoped breaker opens or closes by its own calls' outcomes, the instance
broadcasts it (one small, non-persistent message per change); the others move their breaker
the same way (:meth:`~esb.bus.runtime.breaker.CircuitBreaker.force`), for the cooldown the
opener has left. Each instance still probes after its cooldown; the first success closes the
breaker everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from esb.bus.runtime.breaker import CircuitBreaker
from esb.bus.runtime.ratelimit import TokenBucket
from esb.bus.tasks import cancel_and_wait

log = structlog.get_logger("esb.fleet")

#: How often the shares are recounted from presence besides joins and goodbyes (an instance
#: that falls silent is dropped by its heartbeats' expiry, which no message announces).
RECOUNT = 1.0
#: How long after connecting presence is taken to know the fleet (peers answer a newcomer at
#: once; this is that round trip with a margin).
SETTLE = 1.5
BREAKER_KIND = "breaker"


class Roster(Protocol):
    """What fleet limits need from presence."""

    connected: bool

    def running(self, destination: str) -> int: ...

    def broadcast(self, kind: str, body: dict[str, Any]) -> None: ...

    def listen(self, kind: str, handler: Any) -> None: ...

    def watch(self, changed: Callable[[], None]) -> None: ...


class FleetLimits:
    def __init__(self, roster: Roster) -> None:
        self.roster = roster
        #: destination → (bucket, declared rate, declared burst)
        self._buckets: dict[str, tuple[TokenBucket, float, float]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._task: asyncio.Task[None] | None = None
        roster.listen(BREAKER_KIND, self._on_breaker)
        # At once as well as every RECOUNT: a newcomer settles for longer than RECOUNT, but a
        # periodic recount held up by a busy loop would let its share through twice.
        roster.watch(self.recount)

    def bucket(self, destination: str, rate: float, burst: int | None) -> TokenBucket:
        """A token bucket for ``destination`` whose size follows the fleet's."""
        declared_burst = float(burst) if burst is not None else rate
        share = self.roster.running(destination)
        bucket = TokenBucket(rate / share, max(1.0, declared_burst / share))
        self._buckets[destination] = (bucket, rate, declared_burst)
        return bucket

    def breaker(self, destination: str, breaker: CircuitBreaker) -> CircuitBreaker:
        """Share ``breaker``'s opening and closing with the fleet."""
        self._breakers[destination] = breaker

        def changed(state: str) -> None:
            log.info("fleet breaker changed here; telling the others",
                     destination=destination, state=state)
            self.roster.broadcast(BREAKER_KIND, {"destination": destination, "state": state,
                                                 "cooldown_left": breaker.cooldown_left()})

        breaker.on_change = changed
        return breaker

    async def settle(self) -> None:
        """Wait until presence has had time to hear from the fleet (a newcomer counts the
        others before sending at its share); at once without fleet-scoped destinations."""
        if self._buckets and self.roster.connected:
            await asyncio.sleep(SETTLE)
        self.recount()

    def start(self) -> None:
        if self._buckets and self._task is None:
            self._task = asyncio.create_task(self._follow(), name="esb fleet limits")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def recount(self) -> None:
        for destination, (bucket, rate, burst) in self._buckets.items():
            share = self.roster.running(destination)
            if bucket.rate != rate / share:
                log.info("fleet rate share changed", destination=destination,
                         instances=share, rate=round(rate / share, 3))
                bucket.resize(rate / share, burst / share)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(RECOUNT)
            self.recount()

    def _on_breaker(self, msg: dict[str, Any]) -> None:
        breaker = self._breakers.get(str(msg.get("destination")))
        state = msg.get("state")
        if breaker is None or state not in ("open", "closed"):
            return
        left = msg.get("cooldown_left")
        breaker.force(state, float(left) if isinstance(left, int | float) else None)
        log.info("fleet breaker moved by another instance", destination=msg.get("destination"),
                 state=state, by=msg.get("instance"))
