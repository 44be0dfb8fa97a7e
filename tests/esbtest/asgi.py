"""Serve an ASGI app with uvicorn on 127.0.0.1 in a background thread, for tests that talk to
a real HTTP server (admin API stand-ins, peers)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.requests import Request

from esb.adapters.testing.daemon import free_port

#: How long a server waits, once its block ends, for the requests still in the app: the test
#: is over, so one that is still running (a backend that never answers) is cancelled then.
#: Without it uvicorn waits for every one, and the block's end for ``timeout``.
SHUTDOWN_GRACE = 0.5


@contextmanager
def serve_in_thread(app: Any, timeout: float = 10) -> Iterator[str]:
    """Run ``app`` (lifespan on) until the block ends; yields its base URL."""
    port = free_port()  # below the ephemeral range: no client socket takes it meanwhile
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning",
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


async def answer_late(request: Request, seconds: float) -> None:
    """In a handler: wait ``seconds`` before answering, or less once the caller has hung up
    (nobody is left to answer then, and a server being shut down need not wait for it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)
