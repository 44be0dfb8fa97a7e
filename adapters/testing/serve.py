"""Serve ASGI apps and inbound sides on 127.0.0.1 inside the test's own event loop.

Peers for outbound tests (a Starlette app that answers 200, 503 or 400) and the HTTP routes of
an inbound side run on real sockets, in the same loop as the adapter, the way the daemon serves
them (:func:`esb.bus.runtime.http.build_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from esb.adapters.spec import Inbound
from esb.bus.runtime.http import bind_listener, build_app, make_server


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1; yields its base URL, stops on exit."""
    sock = bind_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(app, "127.0.0.1", port, graceful=2)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises what stopped it
        if not server.started:
            raise RuntimeError("the test HTTP server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        sock.close()


@contextlib.asynccontextmanager
async def serve_inbound(side: Inbound) -> AsyncIterator[str | None]:
    """Serve an inbound side's ``routes`` as the daemon would; yields the base URL (``None``
    when the side serves no HTTP routes)."""
    routes = list(getattr(side, "routes", None) or [])
    if not routes:
        yield None
        return
    app = build_app(routes, [], not_ready=lambda: None, metrics=lambda: b"")
    async with serve_asgi(app) as url:
        yield url
