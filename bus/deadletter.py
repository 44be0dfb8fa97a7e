"""The dead-letter record: the one shape of an envelope kept in the dead-letter queue.

Every place that dead-letters (a route's or a destination's transform step at ingress, a
delivery that failed for good, a replay whose steps failed again, a body on a queue that is not
an envelope) builds its record with :func:`dead_letter` or :func:`malformed`; the tools that
read the queue (``esb dlq``, replay) read it with :func:`stage_of`.

A record is the envelope as it was when it failed, with ``esberror`` (why), ``esbroute`` and
``esbdestination`` (where; no destination when the route's own steps failed) and a last
``dead-lettered`` hop whose detail names the ``stage``, the ``reason``, the route and the
destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from esb.bus.envelope import Attempt, Envelope, Hop, utcnow

#: A route's own transform steps failed, before fan-out: a replay routes it again.
ROUTE_TRANSFORM = "route-transform"
#: A destination's own transform steps failed: a replay runs them again, for it alone.
LEG_TRANSFORM = "destination-transform"
#: The destination refused it for good, or the retry budget is spent: a replay redelivers it.
DELIVERY = "delivery"
#: A body on a queue that is not an envelope: kept as bytes, never replayed.
MALFORMED = "malformed"
#: The ``type`` of a :data:`MALFORMED` record.
MALFORMED_TYPE = "esb.malformed"


def dead_letter(env: Envelope, reason: str, *, stage: str, instance: str | None,
                route: str | None = None, destination: str | None = None,
                attempts: Sequence[Attempt] | None = None, at: datetime | None = None
                ) -> Envelope:
    """``env`` as the dead-letter queue keeps it. ``route``/``destination`` default to the
    envelope's own; ``attempts`` replaces its attempt history when given."""
    route = route if route is not None else env.esbroute
    if destination is None and stage != ROUTE_TRANSFORM:
        destination = env.esbdestination
    hop = Hop(at=at or utcnow(), step="dead-lettered", instance=instance,
              detail={"stage": stage, "reason": reason, "route": route,
                      "destination": destination})
    update: dict[str, object] = {"esbroute": route, "esbdestination": destination,
                                 "esberror": reason, "esbhops": [*env.esbhops, hop]}
    if attempts is not None:
        update["esbattempts"] = list(attempts)
    return env.model_copy(update=update)


def malformed(body: bytes, exc: Exception) -> Envelope:
    """The record of a body found on a queue that does not parse as an envelope."""
    reason = f"not a valid envelope: {exc}"
    return Envelope(source="esb", type=MALFORMED_TYPE, data=bytes(body),
                    datacontenttype="application/octet-stream", esberror=reason,
                    esbhops=[Hop(at=utcnow(), step="dead-lettered",
                                 detail={"stage": MALFORMED, "reason": reason})])


def stage_of(env: Envelope) -> str | None:
    """The stage a dead-letter record failed at (``None``: not a dead-letter record)."""
    for hop in reversed(env.esbhops):
        if hop.step == "dead-lettered":
            stage = hop.detail.get("stage")
            return stage if isinstance(stage, str) else None
    return None
