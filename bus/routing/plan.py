"""What a dispatch plan holds: the outcomes of one envelope under a route set (a copy per
destination, dead letters, filtered copies, the unroutable record), the trace notes, a
deferral, the request/reply route a caller waits for and the enrichment answers still needed.
:mod:`esb.bus.routing.dispatch` computes it; the ingress, ``esb routes test`` and replay read
it, and ``to_dict`` is its JSON form (``esb routes test --json``, the admin route trial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from esb.bus.envelope import Envelope
from esb.bus.errors import TransientTransformError
from esb.bus.routing.enrich import EnrichCall
from esb.bus.routing.router import CompiledRoute, ReplyLeg

#: Outcome kinds: a copy for a destination, a dead letter, a filtered copy, an unroutable one.
COPY = "copy"
DEAD = "dead-letter"
DROPPED = "dropped"
UNROUTABLE = "unroutable"

#: A trace step noted while the envelope is planned: (step, detail).
TraceNote = tuple[str, dict[str, object]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One thing the envelope leads to, in firing order. ``destination`` is None for the
    route's own steps (before fan-out) and for the unroutable record."""

    route: str | None
    destination: str | None
    kind: str
    #: COPY: what the destination receives; DEAD / UNROUTABLE: the record kept.
    envelope: Envelope | None = None
    error: str | None = None
    #: DEAD from a transform: the step that failed.
    step: str | None = None

    @property
    def delivered(self) -> bool:
        return self.kind == COPY

    @property
    def dropped(self) -> bool:
        return self.kind == DROPPED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"route": self.route, "destination": self.destination}
        if self.kind == COPY and self.envelope is not None:
            out["datacontenttype"] = self.envelope.datacontenttype
            out["data"] = jsonable(self.envelope.data)
        if self.kind == DROPPED:
            out["dropped"] = True
        if self.error:
            out["error"] = self.error
        ext = self.envelope.extensions if self.envelope is not None else {}
        if "splitindex" in ext:
            out["part"] = f"{ext['splitindex']}/{ext.get('splitsize')}"
        return out


@dataclass(frozen=True, slots=True)
class Deferral:
    """A step asked for a retry: the envelope is not taken at all."""

    route: str
    destination: str | None
    error: TransientTransformError

    @property
    def step(self) -> str:
        return self.error.step


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    """The request/reply route a caller waits for: ``request`` is its destination's copy, or
    None with ``error`` when the route's or destination's steps failed or dropped it."""

    route: str
    destination: str
    leg: ReplyLeg
    request: Envelope | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"route": self.route, "destination": self.destination,
                               "timeout": self.leg.timeout, "steps": self.leg.chain.steps}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class Plan:
    """What routing one envelope does. ``envelope`` is the envelope as it came in."""

    envelope: Envelope
    endpoint: str | None
    version: int
    at: datetime
    fired: list[CompiledRoute]
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[TraceNote] = field(default_factory=list)
    deferred: Deferral | None = None
    #: Parts made by the routes' ``split:`` (0: nothing was split). A split envelope is
    #: published all together or not at all.
    parts: int = 0
    #: The request/reply route the caller waits for, if one fired.
    reply: ReplyPlan | None = None
    #: Enrichment requests whose answers the plan needs to go on (nothing else is planned).
    pending: list[EnrichCall] = field(default_factory=list)

    @property
    def routes(self) -> list[str]:
        return [r.name for r in self.fired]

    @property
    def unroutable(self) -> bool:
        return not self.fired or any(o.kind == UNROUTABLE for o in self.outcomes)

    @property
    def copies(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == COPY]

    @property
    def dead_letters(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == DEAD]

    @property
    def destinations(self) -> list[str]:
        """Destinations that receive a copy (sorted, repeated if several routes)."""
        return sorted(o.destination for o in self.outcomes
                      if o.kind == COPY and o.destination is not None)

    def outputs(self, destination: str) -> list[Envelope]:
        return [o.envelope for o in self.outcomes
                if o.kind == COPY and o.destination == destination and o.envelope is not None]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "endpoint": self.endpoint, "type": self.envelope.type,
            "source": self.envelope.source, "version": self.version, "routes": self.routes,
            "unroutable": self.unroutable, "destinations": self.destinations,
            "deliveries": [o.to_dict() for o in self.outcomes if o.kind != UNROUTABLE]}
        if self.parts:
            out["parts"] = self.parts
        if self.reply is not None:
            out["reply"] = self.reply.to_dict()
        if self.pending:
            out["enrich"] = [{"route": c.route, "destination": c.enricher.destination,
                              "datacontenttype": c.request.datacontenttype,
                              "data": jsonable(c.request.data)} for c in self.pending]
        if self.deferred is not None:
            out["deferred"] = {"route": self.deferred.route,
                               "destination": self.deferred.destination,
                               "step": self.deferred.step, "error": str(self.deferred.error)}
        return out


def jsonable(data: Any) -> Any:
    """Envelope data for a plan's JSON form: bytes as UTF-8 text, else as their repr."""
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return repr(data)
    return data
