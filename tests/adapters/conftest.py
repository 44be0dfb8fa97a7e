"""Shared fixtures for adapter tests: the kit's inbound context and a real HTTP server.

``serve_routes(routes)`` mounts an inbound side's :class:`HttpRoute` list on a Starlette app
served by uvicorn on 127.0.0.1 in a background thread and returns its base URL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from esb.adapters.spec import HttpRoute
from esb.adapters.testing.context import RecordingInboundContext
from esb.adapters.testing.daemon import free_port


class BackgroundServer:
    """Runs an ASGI app under uvicorn in a daemon thread."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def inbound_ctx(tmp_path: Path) -> RecordingInboundContext:
    """The test kit's one-way context, as the source ``test-source``."""
    return RecordingInboundContext(name="test-source", config_dir=tmp_path)


@pytest.fixture
def serve_app() -> Iterator[Callable[[object], str]]:
    """Serve any ASGI app; returns its base URL. Servers stop at teardown."""
    servers: list[BackgroundServer] = []

    def serve(app: object) -> str:
        server = BackgroundServer(app).__enter__()
        servers.append(server)
        return server.url

    yield serve
    for server in servers:
        server.__exit__()


@pytest.fixture
def serve_routes(serve_app: Callable[[object], str]) -> Callable[[list[HttpRoute]], str]:
    """Mount HttpRoutes on a Starlette app and serve it; returns the base URL."""

    def serve(routes: list[HttpRoute]) -> str:
        app = Starlette(routes=[Route(r.path, r.handler, methods=list(r.methods))
                                for r in routes])
        return serve_app(app)

    return serve
