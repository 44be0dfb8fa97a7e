"""The aggregator: envelopes collected by a correlation key until a completion rule, then one
envelope made of them — a destination with ``adapter: aggregate``.

**State lives on RabbitMQ, as the messages themselves.** An aggregate destination's queues are
single-active-consumer partitions (by the correlation key, like ordered delivery), so every
member of a group reaches the same consumer. The consumer keeps a group's members *un-acked*
while the group is open; they are acked only once the merged envelope is on the bus. When the
consuming instance dies, the broker hands the partition and every un-acked member to the next
consumer, which rebuilds the groups from them: nothing is lost, and no second database is
needed.

**Nothing emitted twice.** The merged envelope's id and idempotency key are derived from its
members' ids, and it is accepted through the runtime's idempotency claims: an instance that
died after emitting a group and before acking its members has the group rebuilt and emitted
again by the next one — which the log answers as a duplicate, so it is not published again.

**Timeouts survive restarts.** "Since the first" is measured from the time the first member was
routed here (its last hop, carried in the message), not from when this instance saw it: a
group rebuilt after a crash fires at the same moment it would have (at once when overdue).

**Late arrivals** (a member whose group was already emitted): ``late: new-group`` (default)
starts a new group with it; ``late: dead-letter`` sends it to the DLQ with the reason, for
groups that must never be emitted twice (remembered by this instance for ``late_window``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jmespath
import orjson
import structlog
from lxml import etree

from esb.adapters.spec import Accepted
from esb.bus.broker.base import DEAD_LETTER, Bus, Message
from esb.bus.deadletter import dead_letter
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError
from esb.bus.runtime.ordering import Partitioner
from esb.bus.tasks import cancel_and_wait
from esb.bus.xmlsafe import XmlError, parse_xml

log = structlog.get_logger("esb.aggregator")

Merge = Callable[[list[Envelope]], Any]

#: Seconds after taking over before timeouts are judged: the members held by the previous
#: consumer are redelivered first, so a rebuilt group is whole when its timeout is checked.
SETTLE = 1.0
#: A group judged by its timeout has had no new member for this long (the members of a group
#: taken over from a dead instance come back in one burst).
QUIET = 0.25


@dataclass
class Group:
    key: str
    #: Members by envelope id (a redelivered member replaces its stale copy).
    members: dict[str, Message] = field(default_factory=dict)
    first_at: float = float("inf")
    #: When the latest member came (local monotonic clock).
    touched: float = 0.0

    def add(self, msg: Message) -> None:
        self.members[msg.envelope.id] = msg
        self.touched = time.monotonic()
        self.first_at = min(self.first_at, routed_at(msg.envelope))

    def envelopes(self) -> list[Envelope]:
        envs = [m.envelope for m in self.members.values()]
        if all("splitindex" in e.extensions for e in envs):
            return sorted(envs, key=lambda e: int(e.extensions["splitindex"]))
        return sorted(envs, key=lambda e: (routed_at(e), e.id))


def routed_at(envelope: Envelope) -> float:
    """When the envelope was routed here: its last hop (kept in the message across crashes)."""
    return (envelope.esbhops[-1].at if envelope.esbhops else envelope.time).timestamp()


class Aggregator:
    """The runtime side of an aggregate destination (built by its spec; see the module doc)."""

    def __init__(self, name: str, settings: Any, merge: Merge) -> None:
        self.name = name
        self.settings = settings
        self.merge = merge
        done = settings.complete
        self._predicate = jmespath.compile(done.predicate) if done.predicate else None
        self.correlation = Partitioner(name, settings.ordered)
        self._groups: dict[str, Group] = {}
        self._completed: dict[str, float] = {}
        self._bus: Bus | None = None
        self._accept: Callable[[Envelope], Awaitable[Accepted]] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.instance = ""
        self.emitted = 0

    # -- the Outbound shape, so the registry and config treat it like any destination ----------

    async def start(self) -> None:
        return None

    async def send(self, envelope: Envelope) -> None:
        raise PermanentError("an aggregate destination is consumed by the runtime, not sent to")

    async def stop(self) -> None:
        task, self._sweeper = self._sweeper, None
        await cancel_and_wait(task)

    # -- runtime ---------------------------------------------------------------------------------

    async def attach(self, bus: Bus, addresses: Sequence[str],
                     accept: Callable[[Envelope], Awaitable[Accepted]], instance: str) -> None:
        """Consume ``addresses`` (the destination's partitions) and emit through ``accept``."""
        self._bus, self._accept, self.instance = bus, accept, instance
        for address in addresses:
            await bus.consume(address, self._on_message, self.settings.max_open)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name=f"esb-aggregate-{self.name}")

    async def _on_message(self, msg: Message) -> None:
        env = msg.envelope
        key = self.correlation.key(env)
        if not key:
            await self._dead(msg, f"aggregate {self.name}: no correlation value at "
                                  f"{self.settings.correlation!r}")
            return
        if self.settings.late == "dead-letter" and key in self._completed:
            await self._dead(msg, f"aggregate {self.name}: group {key!r} was already emitted "
                                  "(a late arrival)")
            return
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(key)
        group.add(msg)
        # A timeout is the sweep's: members of a rebuilt group come back one by one, and an
        # overdue group must not go out with the first of them.
        if self._complete(group, None):
            await self._emit(group)

    def _complete(self, group: Group, now: float | None) -> bool:
        """Whether ``group`` is complete; the timeout counts only when ``now`` is given."""
        done = self.settings.complete
        n = len(group.members)
        if done.count is not None and n >= done.count:
            return True
        if done.split:
            sizes = {m.envelope.extensions.get("splitsize") for m in group.members.values()}
            indexes = {m.envelope.extensions.get("splitindex") for m in group.members.values()}
            if len(sizes) == 1 and None not in sizes and len(indexes - {None}) >= int(*sizes):
                return True
        if self._predicate is not None:
            with contextlib.suppress(Exception):  # a predicate that cannot apply is False
                if self._predicate.search([_json(e) for e in group.envelopes()]):
                    return True
        return done.timeout is not None and now is not None \
            and now - group.first_at >= done.timeout

    async def _sweep(self) -> None:
        timeout = self.settings.complete.timeout
        interval = min(max(timeout / 10, 0.05), 0.5) if timeout else 0.5
        await asyncio.sleep(SETTLE)  # the backlog of a partition just taken over arrives
        while True:
            await asyncio.sleep(interval)
            now, quiet = time.time(), time.monotonic() - QUIET
            for group in [g for g in self._groups.values()
                          if g.touched <= quiet and self._complete(g, now)]:
                await self._emit(group)
            horizon = now - self.settings.late_window
            for key in [k for k, at in self._completed.items() if at < horizon]:
                del self._completed[key]

    async def _emit(self, group: Group) -> None:
        if self._groups.get(group.key) is not group:
            return  # emitted already (by the sweep, or a message completing it meanwhile)
        del self._groups[group.key]
        members = group.envelopes()
        try:
            merged = self._merged(group.key, members)
        except Exception as exc:
            log.error("aggregate merge failed; the group is dead-lettered", aggregate=self.name,
                      key=group.key, error=str(exc))
            for msg in group.members.values():
                await self._dead(msg, f"aggregate {self.name}: merge failed: {exc}")
            return
        assert self._accept is not None
        try:
            await self._accept(merged)
        except Exception as exc:  # the bus refused: the broker gives the members back
            log.warning("aggregate not emitted; its members go back to the queue",
                        aggregate=self.name, key=group.key, error=str(exc))
            for msg in group.members.values():
                msg.requeue()
            return
        for msg in group.members.values():
            msg.ack()
        self._completed[group.key] = time.time()
        self.emitted += 1

    def _merged(self, key: str, members: list[Envelope]) -> Envelope:
        digest = hashlib.sha256("\n".join(sorted(e.id for e in members)).encode())
        out_id = f"{self.name}-{digest.hexdigest()[:32]}"
        result = self.merge(members)
        if isinstance(result, Envelope):
            return result.model_copy(update={"id": out_id, "idempotencykey": out_id})
        data, content_type = result
        return Envelope(id=out_id, idempotencykey=out_id, source=self.name,
                        type=self.settings.type, subject=key, correlationid=key,
                        datacontenttype=content_type, data=data,
                        extensions={"aggregatesize": len(members)})

    async def _dead(self, msg: Message, reason: str) -> None:
        assert self._bus is not None
        record = dead_letter(msg.envelope, reason, stage="aggregate", instance=self.instance,
                             route=msg.envelope.esbroute, destination=self.name)
        try:
            await self._bus.publish(DEAD_LETTER, record)
        except Exception:
            msg.requeue()
            return
        msg.ack()

    def status(self) -> dict[str, Any]:
        return {"open_groups": len(self._groups),
                "open_members": sum(len(g.members) for g in self._groups.values()),
                "emitted": self.emitted}

    # -- offline preview (esb routes test) --------------------------------------------------

    def preview(self, envelopes: Sequence[Envelope]) -> list[Preview]:
        """What this aggregate would do with ``envelopes`` (routed to it, in this order): each
        group, whether a rule other than the timeout completes it, and the envelope it emits
        then (or on its timeout). Pure: nothing is consumed or published."""
        groups: dict[str, Group] = {}
        out: list[Preview] = []
        for env in envelopes:
            key = self.correlation.key(env)
            if not key:
                out.append(Preview(key, [env], None, f"no correlation value at "
                                                     f"{self.settings.correlation!r}"))
                continue
            group = groups.setdefault(key, Group(key))
            group.add(_Held(env))
            if self._complete(group, None):
                out.append(self._preview(group, "complete"))
                del groups[key]
        for group in groups.values():
            why = ("on its timeout" if self.settings.complete.timeout is not None
                   else "never: no rule completes it yet")
            out.append(self._preview(group, why))
        return out

    def _preview(self, group: Group, when: str) -> Preview:
        members = group.envelopes()
        try:
            return Preview(group.key, members, self._merged(group.key, members), when)
        except Exception as exc:
            return Preview(group.key, members, None, f"merge failed: {exc}")


@dataclass(frozen=True)
class Preview:
    """One group of :meth:`Aggregator.preview`: its members, and what it emits and when."""

    key: str
    members: list[Envelope]
    emitted: Envelope | None
    when: str


@dataclass
class _Held:
    """A member in a preview: an envelope not taken from any queue."""

    envelope: Envelope

    def ack(self) -> None:
        return None

    def requeue(self) -> None:
        return None


def _json(envelope: Envelope) -> Any:
    data = envelope.data
    if envelope.is_json and isinstance(data, (bytes, str)):
        return orjson.loads(data)
    return data


def json_list(members: list[Envelope]) -> tuple[Any, str]:
    """Merge: the members' JSON payloads as one list (in split order, else arrival order)."""
    return [_json(e) for e in members], "application/json"


def xml_wrapper(root: str) -> Merge:
    """Merge: the members' XML documents as children of one ``<root>`` element."""
    def merge(members: list[Envelope]) -> tuple[Any, str]:
        wrapper = etree.Element(root)
        for e in members:
            if not isinstance(e.data, (bytes, str)):
                raise ValueError(f"member {e.id} is not XML")
            try:
                wrapper.append(parse_xml(e.data))
            except XmlError as exc:
                raise ValueError(f"member {e.id}: {exc}") from None
        return etree.tostring(wrapper, xml_declaration=True, encoding="UTF-8"), \
            "application/xml"

    return merge


def python_merge(function: Callable[[list[Envelope]], Any]) -> Merge:
    """Merge: a Python function of the members returning JSON data or a whole Envelope."""
    def merge(members: list[Envelope]) -> Any:
        result = function(members)
        return result if isinstance(result, Envelope) else (result, "application/json")

    return merge
