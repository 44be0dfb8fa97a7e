"""An unexpected exception on a request path is a problem+json 500 carrying an error id that
the log has with the traceback; the client never sees the exception's text."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from structlog.testing import capture_logs

from esb.adapters.spec import HttpRoute
from esb.bus.runtime.http import build_app

SECRET_TEXT = "password=hunter2 at /srv/esb/internal.py"


async def crash(request: Request) -> Response:
    raise RuntimeError(SECRET_TEXT)


@pytest.mark.parametrize("path", ["/in/boom", "/admin/boom"])
async def test_a_crash_is_a_500_problem_with_an_id(path: str) -> None:
    app = build_app([HttpRoute("/in/boom", ("POST",), crash)],
                    [Route("/admin/boom", crash, methods=["POST"])],
                    not_ready=lambda: None, metrics=lambda: b"")
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://esb") as client:
            r = await client.post(path, content=b"{}")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == "Internal error" and len(body["error_id"]) == 32
    assert body["error_id"] in body["detail"]
    assert "hunter2" not in r.text and "Traceback" not in r.text
    assert any(e.get("error_id") == body["error_id"] and e["log_level"] == "error"
               for e in logs), logs
