"""Context doubles for adapter tests: what the runtime would hand an inbound or outbound side.

:class:`RecordingInboundContext` behaves like the daemon's source context — ``accept`` returns
only once the (embedded) bus took the envelope — and lets a test make the bus fail
(``down = True``: :class:`~esb.bus.errors.BusUnavailable`) or hold ``accept`` open
(:meth:`RecordingInboundContext.hold`) to see what the adapter tells its peer meanwhile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from esb.adapters.spec import Accepted, OutboundContext, SourceState
from esb.bus.broker.base import Bus, destination_address
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable
from esb.bus.payload import DEFAULT_JSON_DEPTH
from esb.bus.reply import failure_envelope
from esb.bus.runtime.local_leases import FileState
from esb.bus.xmlsafe import DEFAULT_LIMITS, XmlLimits

#: The destination the kit's inbound context publishes accepted envelopes to.
KIT_DESTINATION = "kit"


@dataclass
class RecordingInboundContext:
    """An :class:`~esb.adapters.spec.InboundContext` that records what it accepted.

    ``accepted`` holds every envelope ``accept`` returned for; ``attempts`` counts every call,
    failed or held ones included. With a ``bus``, accepted envelopes are also published to
    ``dest.<destination>`` on it, so a test can consume them like a delivery worker would.
    """

    name: str = "kit-source"
    config_dir: Path = Path(".")
    instance: str = "kit-1"
    max_body: int = 1024 * 1024
    bus: Bus | None = None
    destination: str = KIT_DESTINATION
    #: While true, ``accept`` raises BusUnavailable (the runtime's "bus is down").
    down: bool = False
    accepted: list[Envelope] = field(default_factory=list)
    attempts: int = 0
    #: The outbound allow-list the daemon would hand in (``http.allowed_hosts``).
    allowed_hosts: tuple[str, ...] = ()
    #: The body bounds the daemon would hand in (``limits.xml``, ``limits.json.max_depth``).
    xml_limits: XmlLimits = DEFAULT_LIMITS
    json_depth: int = DEFAULT_JSON_DEPTH
    #: The source's state document (as ``ctx.state``); default: a file under ``config_dir``,
    #: like the embedded bus keeps it. Two contexts given the same one share it.
    state: SourceState | None = None
    #: The reasons :meth:`rejected` was called with, in order.
    refusals: list[str] = field(default_factory=list)
    _gate: asyncio.Event | None = field(default=None, repr=False)
    #: Every route is one-way here: :meth:`request` is :meth:`accept`.
    replies = False

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = FileState(self.config_dir / ".esb" / "sources" / f"{self.name}.json")

    def rejected(self, reason: str) -> None:
        self.refusals.append(reason)

    def hold(self) -> None:
        """Make ``accept`` wait (not return) until :meth:`release`."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        """Let held and later ``accept`` calls through."""
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    async def accept(self, envelope: Envelope) -> Accepted:
        self.attempts += 1
        if self._gate is not None:
            await self._gate.wait()
        if self.down:
            raise BusUnavailable("the bus is down (esb test kit)")
        if not isinstance(envelope, Envelope):
            raise TypeError(f"accept() takes an Envelope, not {type(envelope).__name__}")
        address = destination_address(self.destination)
        if self.bus is not None:
            await self.bus.publish(address, envelope)
        duplicate = any(e.key == envelope.key for e in self.accepted)
        self.accepted.append(envelope)
        return Accepted(id=envelope.id, destinations=(address,), duplicate=duplicate)

    async def request(self, envelope: Envelope, *, one_way: bool = True) -> Envelope | Accepted:
        """As the daemon answers when no request/reply route takes the envelope: accepted, or
        with ``one_way=False`` an ``unanswerable`` failure and nothing published."""
        if not one_way:
            return failure_envelope(envelope, "unanswerable", "the test kit's context "
                                    "answers no request", 404)
        return await self.accept(envelope)


def outbound_context(client: httpx.AsyncClient, config_dir: Path, name: str = "kit-destination",
                     allowed_hosts: tuple[str, ...] = ()) -> OutboundContext:
    """An :class:`~esb.adapters.spec.OutboundContext` sharing ``client`` like the daemon's pool.

    The client belongs to the caller (as the pool belongs to the daemon): an outbound side must
    not close it.
    """
    return OutboundContext(name=name, config_dir=config_dir, http=lambda: client,
                           allowed_hosts=allowed_hosts)


def http_client(timeout: float = 10.0) -> httpx.AsyncClient:
    """A plain httpx client like the daemon's: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)
