"""Fake peers in a background thread: serve an ASGI or WSGI app on 127.0.0.1 from a plain
(synchronous) test or script, the way the worked examples in ``examples/`` run the systems they
integrate (a Stripe-like API, a SOAP ERP, ...).

``with PeerServer(app) as peer: ... peer.url ...`` — the server listens before ``__enter__``
returns and is shut down on exit. ``port=0`` picks a free port.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from esb.bus.runtime.http import make_server as make_asgi_server


class PeerServer:
    """Serves an ASGI app (or a WSGI app with ``wsgi=True``) on ``host:port`` in a thread."""

    def __init__(self, app: Any, port: int = 0, *, host: str = "127.0.0.1",
                 wsgi: bool = False) -> None:
        self.app = app
        self.host = host
        self.wsgi = wsgi
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self._thread: threading.Thread | None = None
        self._asgi: Any = None
        self._httpd: WSGIServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> PeerServer:
        if self.wsgi:
            self._sock.close()  # wsgiref binds its own socket (SO_REUSEADDR) on this port
            self._httpd = make_server(self.host, self.port, self.app,
                                      server_class=_ThreadingWSGIServer, handler_class=_Quiet)
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                            daemon=True)
            self._thread.start()
            return self
        self._asgi = make_asgi_server(self.app, self.host, self.port, graceful=2)
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            task = loop.create_task(self._asgi.serve(sockets=[self._sock]))

            async def watch() -> None:
                while not self._asgi.started and not task.done():
                    await asyncio.sleep(0.01)
                started.set()

            loop.run_until_complete(watch())
            loop.run_until_complete(task)
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not started.wait(10) or not self._asgi.started:
            raise RuntimeError(f"the peer on port {self.port} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._asgi is not None:
            self._asgi.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._sock.close()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None
