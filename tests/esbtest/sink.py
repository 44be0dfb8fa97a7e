"""A real HTTP destination on 127.0.0.1 that records what it receives.

It de-duplicates by ``Idempotency-Key`` the way a well-behaved destination would, so tests can
count deliveries (unique keys) and duplicates separately, and can be told to fail.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    key: str | None
    headers: dict[str, str]
    body: bytes
    #: When the handler read the request (``time.monotonic()``).
    at: float
    #: When the request reached the socket, by the kernel's receive timestamp on the same
    #: clock (:class:`_StampedReader`): free of this process's own scheduling delays, which
    #: on a busy machine bunch ``at`` up. ``None`` without one (another platform, or a request
    #: a pipelining client sent in one read with the one before).
    on_wire: float | None = None

    @property
    def arrived(self) -> float:
        """``on_wire`` where there is one, else ``at``."""
        return self.at if self.on_wire is None else self.on_wire


def answer_after(seconds: float) -> Callable[[Received], tuple[int, dict[str, str]]]:
    """A ``status_for`` that answers 200 after ``seconds`` (keeps deliveries in flight)."""

    def slow(rec: Received) -> tuple[int, dict[str, str]]:
        time.sleep(seconds)
        return 200, {}

    return slow


#: Linux's SO_TIMESTAMPNS (the socket module does not name it): each read with ``recvmsg``
#: says when what it returns arrived.
_SO_TIMESTAMPNS = 35
_STAMP_SPACE = socket.CMSG_SPACE(16)


def _monotonic_offset() -> float:
    """``time.time() - time.monotonic()``, from the closest of a few paired readings (a
    thread preempted between the two calls would skew one)."""
    best: tuple[float, float] | None = None
    for _ in range(5):
        m1 = time.monotonic()
        wall = time.time()
        m2 = time.monotonic()
        if best is None or m2 - m1 < best[0]:
            best = (m2 - m1, wall - (m1 + m2) / 2)
    assert best is not None
    return best[1]


class _StampedReader(io.RawIOBase):
    """A connection's reads, through ``recvmsg`` so the kernel's receive timestamp comes
    along. :meth:`mark` starts a request; :attr:`first` is then the timestamp of the first
    read from the socket since (when several segments wait, the kernel gives the latest's).
    """

    def __init__(self, conn: socket.socket, offset: float) -> None:
        self.conn = conn
        self.offset = offset
        self.first: float | None = None
        self._fresh = False

    def readable(self) -> bool:
        return True

    def mark(self) -> None:
        self.first, self._fresh = None, True

    def readinto(self, buffer: Any) -> int:
        n, ancillary, _, _ = self.conn.recvmsg_into([buffer], _STAMP_SPACE)
        if self._fresh:
            self._fresh = False
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack("qq", data[:16])
                    self.first = sec + nsec / 1e9 - self.offset
        return n


class _Server(ThreadingHTTPServer):
    #: A listen backlog as deep as a daemon's concurrency (the default of 5 stalls connects,
    #: and stalled connects time out as transient failures that trip the breaker).
    request_queue_size = 128

    def server_bind(self) -> None:
        # On the listening socket, so a connection has timestamps from its first segment
        # (set after accept, a request that came before it would have none).
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        super().server_bind()


@dataclass
class Sink:
    """``status_for(request) -> (status, headers)`` decides each answer (default 200)."""

    status_for: Callable[[Received], tuple[int, dict[str, str]]] | None = None
    received: list[Received] = field(default_factory=list)
    #: Every request, whatever it was answered (for timing retries).
    requests: list[tuple[Received, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    down: bool = False

    def __post_init__(self) -> None:
        sink = self
        offset = _monotonic_offset()
        #: unique keys received so far, kept as requests arrive (tests poll it often)
        self._keys: Counter[str | None] = Counter()
        self._arrived = threading.Condition(self.lock)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.rfile.close()  # (the socket closes only once its files are closed)
                self._stamps = _StampedReader(self.connection, offset)
                self.rfile = io.BufferedReader(self._stamps)

            def handle_one_request(self) -> None:
                self._stamps.mark()
                super().handle_one_request()

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                now = time.monotonic()
                stamp = self._stamps.first
                rec = Received(self.path, self.headers.get("idempotency-key"),
                               {k.lower(): v for k, v in self.headers.items()}, body,
                               now, None if stamp is None else min(now, stamp))
                if sink.down:
                    status, headers = 503, {"Retry-After": "1"}
                elif sink.status_for is not None:
                    status, headers = sink.status_for(rec)
                else:
                    status, headers = 200, {}
                with sink.lock:
                    sink.requests.append((rec, status))
                    if 200 <= status < 300:
                        sink.received.append(rec)
                        sink._keys[rec.key] += 1
                        sink._arrived.notify_all()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._handler = Handler
        self._listen(0)

    def _listen(self, port: int) -> None:
        self.server = _Server(("127.0.0.1", port), self._handler)
        self.server.daemon_threads = True
        # close() waits for the serving loop to notice: at the default poll interval (0.5 s)
        # that is a quarter of a second per sink on average, in nearly every test.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def go_away(self) -> None:
        """A real outage: close the listening socket, so connections are refused (unlike
        ``down``, which answers 503). :meth:`come_back` listens again on the same port."""
        self._port = self.server.server_address[1]
        self.close()

    def come_back(self) -> None:
        self._listen(self._port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def keys(self) -> Counter[str | None]:
        with self.lock:
            return Counter(self._keys)

    def unique(self) -> set[str | None]:
        with self.lock:
            return set(self._keys)

    def wait_for(self, n_unique: int, timeout: float) -> bool:
        """Wait until ``n_unique`` different keys have been accepted (woken by arrivals)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._keys) >= n_unique, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
