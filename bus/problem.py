"""HTTP answers in one shape: RFC 9457 problem details for every error an inbound side or the
admin API gives, a plain JSON answer, and the one answer for an envelope the bus did not take.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from esb.bus.errors import BusError, TransformDeferred

#: The media type of every error answer esb gives (RFC 9457).
PROBLEM_JSON = "application/problem+json"


def problem_document(status: int, title: str, detail: str | None = None, **extra: Any
                     ) -> dict[str, Any]:
    """The RFC 9457 problem document of every error esb answers or carries in a failure reply.
    ``type`` stays ``about:blank``: the status and title say what happened, ``detail`` (left
    out when empty) says what to fix; ``extra`` members follow."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


def problem(status: int, title: str, detail: str | None = None, *,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A ``application/problem+json`` response carrying :func:`problem_document`."""
    return Response(orjson.dumps(problem_document(status, title, detail, **extra)),
                    status_code=status, media_type=PROBLEM_JSON, headers=headers)


def internal_error(log: Any, message: str = "request failed inside esb", **context: Any
                   ) -> Response:
    """The ``500`` for an unexpected exception on a request path: the traceback goes to the log
    under a fresh error id, the client gets only that id (never a traceback or the exception's
    text). Call it inside the ``except`` block."""
    error_id = uuid.uuid4().hex
    log.exception(message, error_id=error_id, **context)
    return problem(500, "Internal error",
                   f"the request failed inside esb; its log has error id {error_id}",
                   error_id=error_id, instance=f"urn:esb:error:{error_id}")


async def json_object(request: Request, empty: dict[str, Any] | None = None
                      ) -> dict[str, Any] | Response:
    """The request's body as a JSON object, or the 400 problem to answer instead. ``empty``:
    what an empty body means (None: an empty body is malformed)."""
    raw = await request.body()
    if not raw and empty is not None:
        return dict(empty)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return problem(400, "Malformed JSON", str(exc))
    if not isinstance(body, dict):
        return problem(400, "Malformed request", "the body is a JSON object")
    return body


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` as an ``application/json`` response."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def not_taken_title(exc: BusError) -> str:
    """What to call a refusal by the bus: a transform step that asked for a retry is not an
    unavailable bus, and the sender (or its operator) should be told which it was."""
    return "Transform step asked for a retry" if isinstance(exc, TransformDeferred) \
        else "Bus unavailable"


def not_taken(exc: BusError, detail: str, retry_after: int = 1) -> Response:
    """503 with ``Retry-After``: the envelope was not taken (nothing published); retry."""
    return problem(503, not_taken_title(exc), detail, headers={"Retry-After": str(retry_after)})
