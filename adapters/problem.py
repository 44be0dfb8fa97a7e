"""RFC 9457 problem details: the one shape every inbound HTTP error takes."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None, *,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A ``application/problem+json`` response. ``type`` stays ``about:blank``: the status and
    title say what happened, ``detail`` says what to fix."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON,
                    headers=headers)


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
