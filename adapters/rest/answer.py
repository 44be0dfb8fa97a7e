"""A request/reply answer as the HTTP response a REST caller gets.

A successful reply: its status (200 when the destination gave none), its headers and its data
in its content type. A failure reply: its problem document (application/problem+json) with the
status the failure maps to (:mod:`esb.bus.reply`), and ``Retry-After`` when it says when to
come back.
"""

from __future__ import annotations

from starlette.responses import Response

from esb.bus.envelope import Envelope
from esb.bus.problem import problem
from esb.bus.reply import problem_of


def answer(reply: Envelope) -> Response:
    failure = problem_of(reply)
    if failure is not None:
        extra = {k: v for k, v in failure.document.items()
                 if k not in ("type", "title", "status", "detail")}
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else None
        title = str(failure.document.get("title") or "Failed")
        return problem(failure.status, title, failure.detail, headers=headers, **extra)
    body = reply.data_bytes()
    media = reply.datacontenttype or ("application/json" if body and reply.is_json else None)
    headers = {k: v for k, v in reply.esbheaders.items() if _header_ok(k, v)}
    return Response(body, status_code=reply.esbstatus or 200, headers=headers,
                    media_type=media)


def _header_ok(name: str, value: str) -> bool:
    return name.isascii() and "." not in name and "\n" not in value and "\r" not in value
