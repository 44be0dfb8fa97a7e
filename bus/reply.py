"""Request/reply: the one shape of a reply, and what each failure means to the caller.

A *request* is an envelope carrying ``esbreplyto`` (the bus address its caller waits on) and
``esbdeadline`` (when the caller stops waiting, unix ms). The destination's consumer calls the
outbound side's ``request`` and sends back a *reply envelope*, built only here:

* success (:func:`reply_envelope`): ``type`` = the request's type + ``.reply``; ``data`` the
  response body read by its content type; ``esbstatus`` the protocol status (HTTP); the
  response headers in ``esbheaders``; ``causationid`` the request's id.
* failure (:func:`failure_envelope`): ``esberror`` set, and ``data`` an RFC 9457 problem
  document whose ``status`` is what an HTTP caller is answered with and whose ``kind`` names
  the failure (:data:`TITLES`). SOAP and GraphQL inbound sides turn it into a fault or an error.

The mapping of a destination's failure to the caller's status (:func:`failure_of`)::

    backend 404                          → 404 not-found
    backend 400/409/410/412/422          → same status, rejected (the caller's input)
    backend 5xx, SOAP fault, other 4xx,
      connection failure                 → 502 backend
    no answer before the deadline        → 504 timeout
    circuit breaker open                 → 503 unavailable (Retry-After: its cooldown left)
    instance died while calling          → 502 interrupted
    reply-leg step failed                → 502 transform (the backend is not called again)
    reply larger than the limit          → 502 too-large
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esb.bus.envelope import Envelope, new_id, utcnow
from esb.bus.payload import PayloadError, decode, is_json
from esb.bus.problem import PROBLEM_JSON, problem_document

#: Failure kinds a reply envelope can carry (``data.kind``), with the title of each.
TITLES = {"not-found": "Not found", "rejected": "Rejected by the destination",
          "backend": "Bad gateway", "timeout": "Gateway timeout",
          "unavailable": "Destination unavailable", "interrupted": "Request interrupted",
          "transform": "Reply could not be transformed", "too-large": "Reply too large",
          "unanswerable": "Destination cannot answer"}

#: Backend statuses passed to the caller as they are: they say the caller's input is wrong.
PASSED_THROUGH = frozenset({400, 404, 409, 410, 412, 422})

#: Response headers never copied into a reply (hop-by-hop, or re-computed by esb's server).
_DROPPED_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                              "upgrade", "proxy-authenticate", "proxy-authorization",
                              "content-length", "content-encoding", "date", "server"})


@dataclass(frozen=True)
class Reply:
    """What an outbound side's ``request`` returns: the destination's answer, as it came."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str | None = None


def read_body(body: bytes, content_type: str | None) -> Any:
    """A reply body as envelope ``data`` (:func:`esb.bus.payload.decode`): JSON parsed, XML
    and other text as text; bytes that are not what their content type says stay bytes."""
    if not body:
        return None
    try:
        return decode(body, content_type)
    except PayloadError:
        return body


def reply_envelope(request: Envelope, reply: Reply, destination: str) -> Envelope:
    """The reply envelope of a successful call."""
    data = read_body(reply.body, reply.content_type)
    content_type = reply.content_type
    if isinstance(data, bytes) and content_type and is_json(content_type):
        content_type = "application/octet-stream"  # claimed JSON, was not: kept as bytes
    headers = {k.lower(): v for k, v in reply.headers.items()
               if k.lower() not in _DROPPED_HEADERS and k.lower() != "content-type"}
    fields = {"source": destination, "type": f"{request.type}.reply", "data": data,
              "datacontenttype": content_type, "correlationid": request.correlationid,
              "causationid": request.id, "idempotencykey": request.idempotencykey,
              "traceparent": request.traceparent, "esbstatus": reply.status,
              "esbheaders": headers, "esbroute": request.esbroute,
              "esbdestination": destination}
    if not destination or (content_type and not content_type.isprintable()) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        return Envelope(**fields)  # validated: refuses what an envelope cannot carry
    return _TEMPLATE.model_copy(update={"id": new_id(), "time": utcnow(), "esbhops": [],
                                        "esbattempts": [], "extensions": {}, **fields})


#: A reply's every other attribute at its default, validated once: a successful reply is a
#: copy of it with the attributes above (one per request/reply call, and every value in it is
#: already valid — the request's, the destination's name, the answer's headers — so the
#: model's validation, ~30 µs, is not run again). The content type is the only text from
#: outside that the model checks (no control characters), so one that is not printable goes
#: through the validating constructor.
_TEMPLATE = Envelope(source="esb", type="esb.reply")  # (its lists and dicts: never shared)


def failure_envelope(request: Envelope, kind: str, detail: str, status: int, *,
                     destination: str | None = None, retry_after: float | None = None,
                     step: str | None = None) -> Envelope:
    """The reply envelope of a failed request: ``data`` is a problem document."""
    problem = problem_document(status, TITLES.get(kind, "Failed"), detail, kind=kind)
    if destination:
        problem["destination"] = destination
    if step:
        problem["step"] = step
    if retry_after is not None:
        problem["retry_after"] = max(1, round(retry_after))
    return Envelope(source=destination or "esb", type=f"{request.type}.reply", data=problem,
                    datacontenttype=PROBLEM_JSON, correlationid=request.correlationid,
                    causationid=request.id, idempotencykey=request.idempotencykey,
                    traceparent=request.traceparent, esbstatus=status, esberror=detail,
                    esbroute=request.esbroute, esbdestination=destination)


def failure_of(status: int | None, fault: str | None = None) -> tuple[str, int]:
    """(kind, caller status) for a destination's failure with protocol ``status`` (see the
    module's table); a protocol fault (SOAP) is always a 502."""
    if fault is not None:
        return "backend", 502
    if status == 404:
        return "not-found", 404
    if status in PASSED_THROUGH:
        return "rejected", status
    return "backend", 502


@dataclass(frozen=True)
class Problem:
    """A failure reply as the inbound side reads it."""

    kind: str
    status: int
    detail: str
    retry_after: int | None = None
    step: str | None = None
    document: Mapping[str, Any] = field(default_factory=dict)


def problem_of(reply: Envelope) -> Problem | None:
    """The failure a reply envelope carries; None for a successful reply."""
    if reply.esberror is None:
        return None
    doc = reply.data if isinstance(reply.data, dict) else {}
    return Problem(kind=str(doc.get("kind", "backend")), status=reply.esbstatus or 502,
                   detail=reply.esberror, retry_after=doc.get("retry_after"),
                   step=doc.get("step"), document=doc)
