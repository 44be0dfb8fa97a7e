"""The canonical envelope: the only thing that travels on the bus.

Its JSON form is a CloudEvents 1.0 *structured-mode* event (``application/cloudevents+json``):
core attributes at the top level, extension attributes beside them, and the payload in ``data``
(JSON values, or text for XML and other text) or ``data_base64`` (binary). esb's own bookkeeping
rides in extensions prefixed ``esb`` so any CloudEvents tool can read (and ignore) it.

CloudEvents gives attributes scalar types only (string, integer, boolean, binary, URI,
timestamp), so the three structured pieces of bookkeeping — ``esbheaders`` (an object),
``esbhops`` and ``esbattempts`` (arrays) — are String attributes holding JSON text on the wire
(:data:`JSON_TEXT_EXTENSIONS`); :func:`bookkeeping` reads them back. Events written before that
(arrays and objects in place) are still read. Received extension attributes must be strings,
integers or booleans too.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from esb.bus.payload import is_json, is_xml

CLOUDEVENTS_JSON = "application/cloudevents+json"
SPECVERSION = "1.0"

CORE_ATTRIBUTES = ("id", "source", "type", "specversion", "time", "subject",
                   "datacontenttype", "dataschema")
#: Extensions with a meaning to esb (CloudEvents names: lowercase letters and digits only).
KNOWN_EXTENSIONS = ("correlationid", "causationid", "idempotencykey", "traceparent",
                    "esbendpoint", "esbrouteversion", "esbroute", "esbdestination",
                    "esbheaders", "esbhops", "esbattempts", "esberror", "esbreplyto",
                    "esbdeadline", "esbstatus")
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
#: Characters a CloudEvents String may not hold (C0 and C1 controls, CloudEvents 1.0 §Type
#: System): refused at the edge, where they would otherwise break every delivery (an HTTP
#: header cannot carry CR LF).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_STRING_ATTRIBUTES = ("id", "source", "type", "subject", "datacontenttype", "dataschema",
                      "correlationid", "causationid", "idempotencykey", "traceparent")
#: Bookkeeping extensions whose values are JSON text in a CloudEvent (see the module docstring).
JSON_TEXT_EXTENSIONS = ("esbheaders", "esbhops", "esbattempts")


def new_id() -> str:
    """A random (version 4) UUID as text: ``str(uuid.uuid4())`` without the UUID object,
    at half the cost (one per accepted envelope)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Hop(BaseModel):
    """One step in an envelope's life (accepted, routed, transformed, dead-lettered ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    step: str
    instance: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Attempt(BaseModel):
    """One delivery attempt and its outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    destination: str
    outcome: str  # "delivered" | "transient" | "permanent"
    status: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    #: The one call a half-open circuit breaker let through to test the destination: its
    #: failure says the destination is still down, not that this envelope used up a try, so
    #: it does not count against ``max_attempts`` (``max_age`` still bounds it).
    probe: bool = False


class Envelope(BaseModel):
    """A CloudEvent plus esb's bookkeeping. Build one with keyword arguments or ``from_json``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    id: str = Field(default_factory=new_id, min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    specversion: str = SPECVERSION
    time: datetime = Field(default_factory=utcnow)
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    #: JSON value, ``str`` for XML/text, ``bytes`` for binary (serialized as ``data_base64``).
    data: Any = None

    correlationid: str | None = None
    causationid: str | None = None
    idempotencykey: str | None = None
    traceparent: str | None = None

    #: The endpoint (configured source) the envelope entered through; what a route's ``from``
    #: matches. ``source`` keeps its CloudEvents meaning (the producer).
    esbendpoint: str | None = None
    esbrouteversion: int | None = None
    esbroute: str | None = None
    esbdestination: str | None = None
    #: Transport headers that must survive (SOAPAction ...), lower-cased names.
    esbheaders: dict[str, str] = Field(default_factory=dict)
    esbhops: list[Hop] = Field(default_factory=list)
    esbattempts: list[Attempt] = Field(default_factory=list)
    esberror: str | None = None
    #: Request/reply (see :mod:`esb.bus.reply`): where the caller waits for the answer (a
    #: reply address of the bus) and until when (unix epoch milliseconds) it waits.
    esbreplyto: str | None = None
    esbdeadline: int | None = None
    #: On a reply: the destination's protocol status (HTTP status), or on an error reply the
    #: status esb answers an HTTP caller with.
    esbstatus: int | None = None

    #: Any other CloudEvents extension attributes, kept as received.
    extensions: dict[str, Any] = Field(default_factory=dict)

    @field_validator("specversion")
    @classmethod
    def _specversion(cls, v: str) -> str:
        if v != SPECVERSION:
            raise ValueError(f"unsupported specversion {v!r} (expected {SPECVERSION!r})")
        return v

    @model_validator(mode="after")
    def _no_controls(self) -> Envelope:
        # One check over every string attribute at once (a validator per field costs several
        # times more on every envelope built).
        text = "".join([self.id, self.source, self.type, self.subject or "",
                        self.datacontenttype or "", self.dataschema or "",
                        self.correlationid or "", self.causationid or "",
                        self.idempotencykey or "", self.traceparent or ""])
        # Every control character is unprintable, so printable text has none: isprintable
        # (~0.25 µs) spares the search (~0.7 µs) on nearly every envelope.
        if not text.isprintable() and _CONTROL.search(text):
            bad = [n for n in _STRING_ATTRIBUTES if _CONTROL.search(getattr(self, n) or "")]
            raise ValueError(f"{', '.join(bad)}: control characters (CR, LF, NUL ...) are not "
                             "allowed in CloudEvents attributes")
        return self

    @field_validator("time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    @field_validator("extensions")
    @classmethod
    def _extension_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not _EXTENSION_NAME.match(name):
                raise ValueError(f"extension attribute name {name!r} must be 1-20 of [a-z0-9]")
            if name in CORE_ATTRIBUTES or name in KNOWN_EXTENSIONS:
                raise ValueError(f"extension {name!r} shadows a known attribute")
        for name, value in v.items():
            if not isinstance(value, str | int | bool):  # (bool is an int)
                raise ValueError(f"extension attribute {name!r} must be a string, an integer "
                                 f"or a boolean, not {type(value).__name__}")
            if isinstance(value, str) and _CONTROL.search(value):
                raise ValueError(f"extension {name!r}: control characters (CR, LF, NUL ...) "
                                 "are not allowed")
        return v

    # -- derived ------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The idempotency key destinations de-duplicate on (the id when none was given)."""
        return self.idempotencykey or self.id

    @property
    def is_json(self) -> bool:
        return is_json(self.datacontenttype)

    @property
    def is_xml(self) -> bool:
        return is_xml(self.datacontenttype)

    def data_bytes(self) -> bytes:
        """The payload as bytes on the wire, in its own content type."""
        d = self.data
        if d is None:
            return b""
        if isinstance(d, bytes):
            return d
        if isinstance(d, str) and not self.is_json:
            return d.encode("utf-8")
        return orjson.dumps(d)

    def with_hop(self, step: str, instance: str | None = None, **detail: Any) -> Envelope:
        hop = Hop(at=utcnow(), step=step, instance=instance, detail=detail)
        return self.model_copy(update={"esbhops": [*self.esbhops, hop]})

    # -- CloudEvents structured JSON ----------------------------------------------------------

    def to_cloudevent(self) -> dict[str, Any]:
        """The structured-mode CloudEvent as a JSON-ready dict (``None`` attributes omitted;
        the structured bookkeeping as JSON text)."""
        return self._structured(_rfc3339)

    def _structured(self, stamp: Callable[[datetime], Any]) -> dict[str, Any]:
        event = self._event(bookkeeping=True, stamp=stamp)
        for name in JSON_TEXT_EXTENSIONS:
            if name in event:
                event[name] = orjson.dumps(event[name], option=_UTC_Z).decode()
        return event

    def match_view(self) -> dict[str, Any]:
        """What route patterns see: the CloudEvent without esb's delivery bookkeeping (route,
        hops, attempts, error), the costly part to build and nothing a route should match on."""
        return self._event(bookkeeping=False)

    def _event(self, *, bookkeeping: bool,
               stamp: Callable[[datetime], Any] | None = None) -> dict[str, Any]:
        # ``stamp``: how a time is written into the dict — as RFC 3339 text (the default), or
        # (for ``to_json``) as a UTC datetime that orjson writes as the same text, in C.
        if stamp is None:
            stamp = _rfc3339
        out: dict[str, Any] = {"specversion": self.specversion, "id": self.id,
                               "source": self.source, "type": self.type,
                               "time": stamp(self.time)}
        for name in _OPTIONAL if bookkeeping else _VIEW_OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.esbheaders:
            out["esbheaders"] = self.esbheaders
        if bookkeeping and self.esbhops:
            out["esbhops"] = [_hop_json(h, stamp) for h in self.esbhops]
        if bookkeeping and self.esbattempts:
            out["esbattempts"] = [_attempt_json(a, stamp) for a in self.esbattempts]
        out.update(self.extensions)
        if isinstance(self.data, bytes):
            out["data_base64"] = base64.b64encode(self.data).decode("ascii")
        elif self.data is not None:
            out["data"] = self.data
        return out

    def to_json(self) -> bytes:
        """``to_cloudevent()`` as JSON bytes. Its times are handed to orjson as datetimes
        (``OPT_UTC_Z``: the text ``_rfc3339`` writes, at a sixth of its cost)."""
        return orjson.dumps(self._structured(_utc), option=_UTC_Z)

    @classmethod
    def from_cloudevent(cls, event: dict[str, Any], **overrides: Any) -> Envelope:
        """Build from a structured-mode CloudEvent dict; unknown attributes become extensions."""
        if not isinstance(event, dict):
            raise ValueError("a structured CloudEvent must be a JSON object")
        fields: dict[str, Any] = {}
        extensions: dict[str, Any] = {}
        for name, value in event.items():
            if name in JSON_TEXT_EXTENSIONS:
                fields[name] = _json_text(name, value)
            elif name in _MODEL_FIELDS:
                fields[name] = value
            elif name == "data_base64":
                if "data" in event:
                    raise ValueError("a CloudEvent carries either data or data_base64, not both")
                try:
                    fields["data"] = base64.b64decode(value, validate=True)
                except (ValueError, TypeError) as exc:
                    raise ValueError("data_base64 is not valid base64") from exc
            else:
                extensions[name] = value
        if "specversion" not in fields:
            raise ValueError("missing required attribute 'specversion'")
        fields["extensions"] = extensions
        fields.update(overrides)
        return cls.model_validate(fields)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        return cls.from_cloudevent(orjson.loads(raw))

    # -- AMQP properties -----------------------------------------------------------------------

    def amqp_properties(self) -> dict[str, Any]:
        """The envelope's attributes mapped onto AMQP basic properties (client-neutral names),
        so that RabbitMQ's own tools show them.

        No application headers: the body is a structured-mode CloudEvent and says everything
        (source, specversion, idempotency key, attempts). A headers table cost ~9 µs of CPU per
        message (pika encodes it on publish and decodes it on every delivery) for nothing any
        consumer read."""
        # AMQP can only carry short strings (255 bytes) and unsigned 64-bit timestamps: a
        # value beyond that (a CloudEvent from the year 300, a long type) is left out here —
        # the body carries it — instead of failing the publish.
        stamp = int(self.time.timestamp())
        return {
            # the publisher matches returned messages by it: a long id is replaced by its digest
            "message_id": _short(self.id) or hashlib.sha256(self.id.encode("utf-8",
                                                                          "surrogatepass")
                                                           ).hexdigest(),
            "correlation_id": _short(self.correlationid),
            "content_type": CLOUDEVENTS_JSON,
            "type": _short(self.type),
            "timestamp": stamp if 0 <= stamp < 2**63 else None,
            "delivery_mode": 2,
        }


def _short(value: str | None) -> str | None:
    """``value`` if it fits an AMQP short string (255 bytes of UTF-8), else None."""
    if value is None or len(value) <= 63:  # 63 characters are at most 252 bytes
        return value
    return value if len(value.encode("utf-8", "surrogatepass")) <= 255 else None


_MODEL_FIELDS = frozenset(Envelope.model_fields) - {"extensions"}
_VIEW_OPTIONAL = ("subject", "datacontenttype", "dataschema", "correlationid", "causationid",
                  "idempotencykey", "traceparent", "esbendpoint", "esbrouteversion")
_OPTIONAL = (*_VIEW_OPTIONAL, "esbroute", "esbdestination", "esberror", "esbreplyto",
             "esbdeadline", "esbstatus")


def _json_text(name: str, value: Any) -> Any:
    """A bookkeeping extension's value: JSON text decoded (older events: the value itself)."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"extension {name!r} is not JSON text: {exc}") from None


def bookkeeping(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` (a CloudEvent as ``to_cloudevent`` writes it) with its structured bookkeeping
    decoded: ``esbhops``/``esbattempts`` as lists, ``esbheaders`` as an object — for tools
    that show them to people."""
    out = dict(event)
    for name in JSON_TEXT_EXTENSIONS:
        if name in out:
            out[name] = _json_text(name, out[name])
    return out


def _hop_json(h: Hop, stamp: Callable[[datetime], Any]) -> dict[str, Any]:
    # What ``model_dump(mode="json", exclude_defaults=True)`` gives, at a third of the cost
    # (every envelope carries two or more hops through every publish).
    out: dict[str, Any] = {"at": stamp(h.at), "step": h.step}
    if h.instance is not None:
        out["instance"] = h.instance
    if h.detail:
        out["detail"] = h.detail
    return out


def _attempt_json(a: Attempt, stamp: Callable[[datetime], Any]) -> dict[str, Any]:
    # ``model_dump(mode="json", exclude_none=True)``, by hand (see _hop_json)
    out: dict[str, Any] = {"at": stamp(a.at), "destination": a.destination,
                           "outcome": a.outcome}
    if a.status is not None:
        out["status"] = a.status
    out["latency_ms"] = a.latency_ms
    if a.error is not None:
        out["error"] = a.error
    if a.probe:
        out["probe"] = True
    return out


def _rfc3339(t: datetime) -> str:
    # (the bus's own JSON, to_json, has orjson write its times: see _utc)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: orjson writes a UTC datetime as ``_rfc3339`` does: ``Z``, microseconds only when not zero.
_UTC_Z = orjson.OPT_UTC_Z
_ZERO = timedelta(0)


def _utc(t: datetime) -> datetime:
    """``t`` for orjson to write as ``_rfc3339(t)``: as it is when its offset is zero, else
    converted to UTC (an aware time from elsewhere; a naive one is taken as local time, as
    ``astimezone`` takes it)."""
    if t.tzinfo is UTC or t.utcoffset() == _ZERO:
        return t
    return t.astimezone(UTC)
