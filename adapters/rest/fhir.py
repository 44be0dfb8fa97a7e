"""FHIR error bodies for rest sources that face FHIR clients (``errors: fhir``).

A FHIR client expects failures as an ``OperationOutcome`` resource in
``application/fhir+json`` (FHIR R4, RESTful API, "Handling errors"), not RFC 9457 problem
documents. :func:`fhir_errors` wraps a source's handler: every problem+json answer it gives
(bad input, auth, bus unavailable, request/reply failures) is re-written as an
OperationOutcome with the same status and headers; the problem's title and detail become the
issue's ``details.text`` and ``diagnostics``, its status the issue ``code``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from esb.bus.problem import PROBLEM_JSON

FHIR_JSON = "application/fhir+json"

#: HTTP status → OperationOutcome issue type (http://hl7.org/fhir/R4/valueset-issue-type.html).
ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
               405: "not-supported", 406: "not-supported", 409: "conflict", 410: "deleted",
               412: "conflict", 413: "too-long", 415: "not-supported", 422: "processing",
               429: "throttled", 502: "transient", 503: "transient", 504: "timeout"}


def operation_outcome(problem: dict[str, Any], status: int) -> dict[str, Any]:
    """The OperationOutcome saying what ``problem`` (an RFC 9457 document) says."""
    issue: dict[str, Any] = {"severity": "fatal" if status >= 500 else "error",
                             "code": ISSUE_CODES.get(status, "exception" if status >= 500
                                                     else "processing")}
    if problem.get("title"):
        issue["details"] = {"text": str(problem["title"])}
    if problem.get("detail"):
        issue["diagnostics"] = str(problem["detail"])
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_errors(handler: Callable[[Request], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` with its problem+json answers re-written as OperationOutcomes."""

    async def handle(request: Request) -> Response:
        response = await handler(request)
        if not response.headers.get("content-type", "").startswith(PROBLEM_JSON):
            return response
        try:
            problem = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return response
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        body = orjson.dumps(operation_outcome(problem if isinstance(problem, dict) else {},
                                              response.status_code))
        return Response(body, response.status_code, headers, media_type=FHIR_JSON)

    return handle
