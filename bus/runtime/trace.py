"""Message trace: every step of one envelope's life, from every instance, for ``esb trace ID``.

The seam is :class:`TraceRecorder`. The hot path (ingress, delivery) calls
:meth:`TraceRecorder.record` several times per message, so an implementation must make that
call cheap (a few µs: append to a buffer, no I/O, no locks, no ``datetime`` objects) and it must
never raise or block: tracing is best-effort and must not cost a message. Reading
(:meth:`TraceRecorder.query`) is rare and may be slow.

Two implementations:

* :class:`MemoryTrace` (here) — the embedded bus (the backend, :mod:`esb.bus.runtime.backend`,
  picks one): a bounded in-process index (the most recent
  100,000 envelope ids, least recently written evicted first).
* :class:`~esb.bus.runtime.trace_rabbitmq.StreamTrace` — the RabbitMQ bus: events of every
  instance in one stream, so any instance answers for all of them.

Steps, in the order they usually happen (``detail`` keys in brackets)::

    accepted          [endpoint, version, key, correlationid]
    transformed       [route, destination, transform, duration_ms]
    routed            [route, version, destination, leg, timeout]  leg=request: the caller waits
    unroutable        [version]
    transform-failed  [route, destination, error]
    attempt           [destination, outcome, status, latency_ms, error, attempt]
    delivered         [destination, status, latency_ms, attempt]
    retry-scheduled   [destination, attempt, retry_in, error]
    dead-lettered     [destination, route, error, attempts]
    replayed          [destination]
    replied           [destination, status, latency_ms, outcome, error]  request/reply: reply sent
    answered          [route, destination, outcome, status, latency_ms, error]  caller answered
    reply-dropped     [destination, status, reason]  a reply came after its caller gave up

``transformed`` is one event per transform step that succeeded (``destination`` only for a
destination's own steps; the route's steps run once for all its destinations). ``delivered``'s
``status`` is what the outbound side's ``send`` returned (an HTTP status, a short text), or
``"accepted"`` when it returned nothing. A request/reply call's legs are summed up by
:func:`esb.bus.runtime.trace_legs.request_legs`. docs/reliability.md ("Tracing") is the user's view.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from esb.bus.errors import EsbError

#: ``accepted`` detail keys :meth:`TraceRecorder.find` can search by: the envelope's
#: idempotency key and correlation id (recorded only when the envelope has them).
SEARCHABLE = ("key", "correlationid")
#: The most envelope ids one search returns.
FIND_LIMIT = 50


@dataclass(frozen=True)
class TraceEvent:
    """One step of one envelope on one instance."""

    id: str
    at: datetime
    step: str
    instance: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``at`` as RFC 3339 UTC with microseconds)."""
        return {"id": self.id, "at": self.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "step": self.step, "instance": self.instance, "detail": self.detail}


@runtime_checkable
class TraceRecorder(Protocol):
    """Where the runtime writes the steps of every envelope, and ``esb trace`` reads them."""

    def record(self, envelope_id: str, step: str, /, *, at: float | None = None,
               **detail: Any) -> None:
        """Note that ``envelope_id`` went through ``step`` on this instance, at unix time
        ``at`` (default: now). Callers that record after an await pass the moment the step
        happened, so events of different instances stay in causal order (the ingress records
        ``accepted`` only once the publish is confirmed, and by then another instance may
        already have attempted the delivery).

        MUST be cheap and must never block or raise (called several times per message on the
        event loop's hot path). ``detail`` values should be JSON-friendly (str, int, float,
        bool, None, lists/dicts of those); anything else is written as its ``str()``."""
        ...

    async def query(self, envelope_id: str, since: timedelta) -> list[TraceEvent]:
        """Every event of ``envelope_id`` recorded in the last ``since`` by ANY instance,
        oldest first. Events still buffered on other instances (≤ one flush interval) may be
        missing. Raises :class:`~esb.bus.errors.BusError` when the store cannot be read."""
        ...

    async def query_many(self, envelope_ids: Collection[str], since: timedelta
                         ) -> dict[str, list[TraceEvent]]:
        """:meth:`query` for several envelopes named by their exact ids, in one read of the
        store: each id's events, oldest first (an empty list for an id without any). Raises
        like :meth:`query`."""
        ...

    async def find(self, field: str, value: str, since: timedelta,
                   limit: int = FIND_LIMIT) -> list[str]:
        """Ids of the envelopes accepted in the last ``since`` whose ``accepted`` step has
        ``detail[field] == value`` (:data:`SEARCHABLE`: the idempotency key or correlation
        id), first seen first, at most ``limit``. Raises like :meth:`query`."""
        ...

    async def start(self) -> None:
        """Connect (idempotent). ``record`` works before ``start``: events are buffered."""
        ...

    async def close(self) -> None:
        """Flush what is buffered (bounded wait) and release resources."""
        ...


class AmbiguousRef(EsbError):
    """A reference (id prefix or idempotency key) that names several envelopes."""

    def __init__(self, ref: str, ids: list[str]) -> None:
        shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
        super().__init__(f"{ref!r} names {len(ids)} envelopes: {shown}; give more of the id")
        self.ids = ids


def refers_to(ref: str, envelope_id: str, step: str, detail: dict[str, Any]) -> bool:
    """Whether a trace event of ``envelope_id`` answers ``ref``: a prefix of its id, or the
    idempotency key its ``accepted`` step recorded."""
    return envelope_id.startswith(ref) or (step == "accepted" and detail.get("key") == ref)


def one_envelope(ref: str, ids: set[str]) -> str | None:
    """The one id ``ref`` resolves to among ``ids`` (None: none). AmbiguousRef if several."""
    if len(ids) > 1:
        raise AmbiguousRef(ref, sorted(ids))
    return next(iter(ids), None)


def sort_events(events: list[TraceEvent]) -> list[TraceEvent]:
    """Time order; ties keep their recorded order (``sorted`` is stable)."""
    return sorted(events, key=lambda e: e.at)


class MemoryTrace:
    """In-process trace for the embedded bus: the last ``max_ids`` envelope ids (LRU by last
    write), at most ``max_events`` events each (a message retried forever cannot grow without
    bound: the oldest of its events go first)."""

    def __init__(self, instance: str, *, max_ids: int = 100_000, max_events: int = 500) -> None:
        self.instance = instance
        self.max_ids = max_ids
        self.max_events = max_events
        #: id → [(unix time, step, instance, detail), ...]
        self._events: OrderedDict[str, list[tuple[float, str, str, dict[str, Any]]]] = \
            OrderedDict()
        #: Events not kept (evicted ids are not counted; only per-id overflow).
        self.dropped = 0

    def record(self, envelope_id: str, step: str, /, *, at: float | None = None,
               **detail: Any) -> None:
        try:
            events = self._events.get(envelope_id)
            if events is None:
                events = self._events[envelope_id] = []
                if len(self._events) > self.max_ids:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(envelope_id)
                if len(events) >= self.max_events:
                    del events[0]
                    self.dropped += 1
            events.append((at or time.time(), step, self.instance, detail))
        except Exception:  # best-effort: never fail the message being traced
            self.dropped += 1

    async def query(self, envelope_id: str, since: timedelta) -> list[TraceEvent]:
        cutoff = time.time() - since.total_seconds()
        if envelope_id not in self._events:  # a unique id prefix or an idempotency key
            found = {eid for eid, events in self._events.items()
                     if any(at >= cutoff and refers_to(envelope_id, eid, step, detail)
                            for at, step, _, detail in events)}
            envelope_id = one_envelope(envelope_id, found) or envelope_id
        return (await self.query_many([envelope_id], since))[envelope_id]

    async def query_many(self, envelope_ids: Collection[str], since: timedelta
                         ) -> dict[str, list[TraceEvent]]:
        cutoff = time.time() - since.total_seconds()
        return {eid: sort_events([TraceEvent(eid, datetime.fromtimestamp(at, UTC), step, inst,
                                             dict(detail))
                                  for at, step, inst, detail in self._events.get(eid, ())
                                  if at >= cutoff])
                for eid in envelope_ids}

    async def find(self, field: str, value: str, since: timedelta,
                   limit: int = FIND_LIMIT) -> list[str]:
        cutoff = time.time() - since.total_seconds()
        accepted = (eid for eid, events in list(self._events.items())
                    if any(step == "accepted" and at >= cutoff and detail.get(field) == value
                           for at, step, _, detail in events))
        return list(itertools.islice(accepted, limit))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._events)

