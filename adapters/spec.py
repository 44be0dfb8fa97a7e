"""The adapter contract: what a built-in or plugin adapter provides, and what it is handed.

An adapter package declares an entry point in group ``esb.adapters`` naming an
:class:`AdapterSpec`. A spec carries typed settings models and factories for an inbound side
(outside protocol → envelopes handed to :meth:`InboundContext.accept`), an outbound side
(envelope → protocol call), or both. Shared resources (the HTTP client pool, the config folder)
are handed in through the context objects, never opened at import or construction time.

Outbound error contract: :meth:`Outbound.send` returns when the destination accepted the
envelope, and otherwise raises :class:`~esb.bus.errors.TransientError` (retry) or
:class:`~esb.bus.errors.PermanentError` (dead-letter), translated from the driver's own errors.
What it returns on success (:data:`SendResult`, optional) is what ``esb trace`` shows as the
delivery's status.

Inbound mode: an inbound side's HTTP routes are served by every instance; what its ``start``
begins (a polling loop, a folder picker, a subscription) runs where :attr:`AdapterSpec.inbound_mode`
says — on every instance, or on exactly one instance across the fleet (``one-instance``: the
runtime calls ``start`` only while this instance holds the source's lease, taken through the
broker, and ``stop`` as soon as it loses it). A side that keeps a cursor keeps it in
:attr:`InboundContext.state`, which lives on the broker and so moves with the lease.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

# Setting types plugins use in their settings models ("10s", "1MiB", "100/s"), exported here
# with the rest of the plugin API.
from esb.bus.config.units import Duration as Duration
from esb.bus.config.units import Rate as Rate
from esb.bus.config.units import Size as ByteSize
from esb.bus.envelope import Envelope
from esb.bus.reply import Reply
from esb.bus.xmlsafe import XmlLimits

__all__ = ["Accepted", "AdapterSettings", "AdapterSpec", "ByteSize", "Duration", "HttpInbound",
           "HttpRoute", "Inbound", "InboundContext", "InboundFactory", "Outbound",
           "OutboundContext", "OutboundFactory", "Rate", "SendResult"]


class AdapterSettings(BaseModel):
    """Base for adapter settings models: unknown keys are errors, listed with their line."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Accepted:
    """The bus confirmed an envelope: its id, and where it went."""

    id: str
    destinations: tuple[str, ...]
    duplicate: bool = False
    #: A duplicate whose payload differs from the original's (same key, another body): it was
    #: not published; HTTP endpoints answer 422.
    mismatch: bool = False


#: Where an inbound side's loop runs: ``every-instance`` (the default: HTTP endpoints, queue
#: consumers that compete) or ``one-instance`` (polling, schedules, folder pickers: exactly one
#: instance of the fleet at a time, moved within seconds when it dies).
InboundMode = Literal["every-instance", "one-instance"]
INBOUND_MODES: tuple[InboundMode, ...] = ("every-instance", "one-instance")


class SourceState(Protocol):
    """A small JSON document a source keeps between ticks and across instances (a poll cursor,
    the last time a schedule fired). On RabbitMQ it lives on the broker; only the lease holder
    of a ``one-instance`` source should write it."""

    async def load(self) -> dict[str, Any] | None:
        """The last saved document, or ``None`` when nothing was saved yet."""
        ...

    async def save(self, document: dict[str, Any]) -> None:
        """Replace the document; returns once it is durable (raises BusError otherwise)."""
        ...


class InboundContext(Protocol):
    """What the runtime hands an inbound side."""

    name: str
    config_dir: Path
    instance: str
    #: Default request body limit in bytes (``http.max_body``).
    max_body: int
    #: The outbound host allow-list (``http.allowed_hosts``; empty allows any), for URLs an
    #: inbound side calls itself (a polled API, a token endpoint).
    allowed_hosts: tuple[str, ...]
    #: Bounds on XML bodies (``limits.xml``) and JSON nesting (``limits.json.max_depth``).
    xml_limits: XmlLimits
    json_depth: int
    #: This source's :class:`SourceState`.
    state: SourceState

    def rejected(self, reason: str) -> None:
        """Count one refused input in ``esb_rejected{source, reason}`` (``reason``: a short
        fixed word, never message text). Answers of 400 or more on :class:`HttpRoute` s are
        counted by the runtime already; a side with its own loop (a queue, a folder) calls
        this when it refuses something."""
        ...

    async def accept(self, envelope: Envelope) -> Accepted:
        """Route and publish; return once the broker confirmed every copy.

        Raises :class:`~esb.bus.errors.BusUnavailable` when it could not: the caller answers its
        peer with a retryable error, and nothing was half-accepted.
        """
        ...

    #: Whether :meth:`request` can wait for a destination's answer: true in the daemon, false
    #: in a one-way context (the test kit's by default), whose ``request`` is :meth:`accept`.
    #: A side that answers only through routes (GraphQL Query fields) serves them when true.
    replies: bool

    async def request(self, envelope: Envelope, *, one_way: bool = True) -> Envelope | Accepted:
        """:meth:`accept`, and when a request/reply route takes the envelope, the destination's
        answer: a reply envelope (reply leg applied) or a failure reply, read with
        :func:`esb.bus.reply.problem_of`. One-way routes give the :class:`Accepted`; with
        ``one_way=False`` nothing is published then, and the answer is an ``unanswerable``
        failure. An inbound side that can answer its caller calls this instead of
        :meth:`accept`."""
        ...


@dataclass
class OutboundContext:
    """What the runtime hands an outbound side."""

    name: str
    config_dir: Path
    http: Callable[[], httpx.AsyncClient]
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpRoute:
    """A path an inbound side serves on the daemon's one HTTP server."""

    path: str
    methods: tuple[str, ...]
    handler: Callable[[Request], Awaitable[Response]]


@runtime_checkable
class Inbound(Protocol):
    """Inbound side: serves ``routes`` on the daemon's HTTP server and/or runs its own loop."""

    routes: list[HttpRoute]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class HttpInbound:
    """Base of an inbound side that only serves its ``routes``: nothing to start or stop."""

    routes: list[HttpRoute]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


#: What :meth:`Outbound.send` may return once the destination accepted an envelope: the
#: protocol's status code (an HTTP status) or a short description (``"ok"``, ``"queued"``) —
#: the ``status`` of the ``delivered`` trace step. ``None`` (the default, and what adapters
#: written before this existed return) is shown as ``"accepted"``.
SendResult = int | str | None


@runtime_checkable
class Outbound(Protocol):
    """Outbound side: the runtime calls ``start`` once, ``send`` per envelope, ``stop`` once.

    ``send`` returns once the destination accepted the envelope, optionally with a
    :data:`SendResult` (its status code, or a short description of at most a few words) that
    the delivery worker records in the trace; returning ``None`` is fine. It raises
    :class:`~esb.bus.errors.TransientError` (retried) or
    :class:`~esb.bus.errors.PermanentError` (dead-lettered) when the destination did not
    accept it, each carrying the protocol status when there is one.
    """

    async def start(self) -> None: ...

    async def send(self, envelope: Envelope) -> SendResult: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Replier(Protocol):
    """An outbound side that can answer requests (request/reply routes, §12) has ``request``
    beside ``send``: the same call, returning the destination's answer as a
    :class:`~esb.bus.reply.Reply` (status, headers, body, content type) and raising the same
    Transient/PermanentError as ``send`` when it fails. A side without it serves one-way routes
    only; the test kit checks it when present."""

    async def request(self, envelope: Envelope) -> Reply: ...


InboundFactory = Callable[[Any, InboundContext], Inbound]
OutboundFactory = Callable[[Any, OutboundContext], Outbound]


@dataclass(frozen=True)
class AdapterSpec:
    """What an ``esb.adapters`` entry point names."""

    name: str
    summary: str
    inbound_settings: type[AdapterSettings] | None = None
    inbound: InboundFactory | None = None
    outbound_settings: type[AdapterSettings] | None = None
    outbound: OutboundFactory | None = None
    docs: str = ""
    examples: dict[str, str] = field(default_factory=dict)
    #: Describes a source of this adapter in the daemon's OpenAPI document (``/openapi.json``):
    #: a :data:`esb.adapters.openapi.Describe`. ``None``: the source is left out.
    openapi: Callable[[Any], Any] | None = None
    #: Where the inbound side's ``start`` loop runs (see the module docstring); a source may
    #: override it with ``runs:`` in esb.yaml.
    inbound_mode: InboundMode = "every-instance"

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(d for d, f in (("inbound", self.inbound), ("outbound", self.outbound)) if f)
