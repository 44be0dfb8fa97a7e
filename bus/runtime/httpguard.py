"""The HTTP server's own limits: what one client may hold before a handler ever runs.

uvicorn's httptools protocol with esb's bounds added (see docs/security.md):

* **connections** — past ``max_connections`` open connections (per process) a new one is
  answered ``503`` problem+json and closed at once, so slow clients cannot use up descriptors;
* **header timeout** — a request's line and headers must arrive within ``header_timeout`` of its
  first byte (of the connection's opening for the first request); else ``408`` and close (a
  connection that sent nothing is closed silently);
* **body timeout** — a body must arrive whole within ``body_timeout`` of its headers; else
  ``408`` and close;
* **idle timeout** — a kept-alive connection with no request is closed after ``idle_timeout``;
* **header count and size** — more than ``max_headers`` header fields, or a request line plus
  headers larger than ``max_header_bytes``, is ``431`` and close; the parser never buffers more
  than that plus one read;
* requests the parser cannot read get a ``400`` problem+json instead of uvicorn's plain text;
* **lingering close** — a connection esb ends while the client may still be sending (a refusal
  above, a ``CONNECT``) is half-closed after the answer and read to its end (discarded) for up
  to :data:`LINGER` seconds before it is closed: a socket closed with unread bytes sends a
  reset, and a reset can reach the client before it has read the answer.

What it cannot do: a request the parser refuses before a method and path are known has no
request to answer in the usual sense; esb still writes the problem+json and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from esb.bus.problem import PROBLEM_JSON, problem_document

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}
log = logging.getLogger("esb.http")

#: At most this long a refused connection is read (and discarded) after its answer, waiting
#: for the client to close first (see the module's "lingering close").
LINGER = 2.0
#: A timer may fire this much before its due time (the loop's clock ticks in milliseconds):
#: the limit counts as passed.
_EARLY = 0.002


@dataclass(frozen=True)
class HttpLimits:
    """The server's bounds (``http.*`` in the configuration; defaults documented there)."""

    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    max_headers: int = 100
    max_header_bytes: int = 16 * 1024


class _Refused(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def problem_bytes(status: int, title: str, detail: str, *,
                  extra_headers: tuple[bytes, ...] = ()) -> bytes:
    """A whole HTTP/1.1 response carrying a problem+json body, closing the connection."""
    body = orjson.dumps(problem_document(status, title, detail))
    head = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
            b"content-type: " + PROBLEM_JSON.encode(), b"content-length: %d" % len(body),
            b"connection: close", *extra_headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` bounded by :attr:`limits` (set by :func:`guarded_protocol`)."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One timer per connection, re-armed lazily: a phase's limit is a due time
        # (``_due``); the timer, when it fires, checks it and sleeps on if it moved. Setting
        # and cancelling a loop timer for each phase cost two of each per request.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when ``_timer`` fires
        self._due: float | None = None  # when the running phase's limit passes
        self._reading_head = True
        self._head_bytes = 0
        self._head_size = 0  # request line and headers as parsed
        self._header_count = 0
        self._started = False  # a byte of the current request has arrived
        self._in_request = False  # a request has begun and not been read whole
        self._done = False  # refused: ignore whatever else arrives
        self._completed = 0  # requests read whole on this connection
        # An Upgrade esb does not take (h2c, websocket): the parser stops after the headers,
        # as if the body were the new protocol's. ``_refused_upgrade``: the request waits for
        # its body; ``_replaying``: a fresh parser re-reads its head (callbacks skipped) to
        # read the body by its own framing (see :meth:`_read_on_as_http`).
        self._refused_upgrade = False
        self._replaying = False

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("connection refused: %d connections open (http.max_connections)",
                        len(self.connections) - 1)
            # Closed at once, not lingering: this is the path that bounds connections.
            self._refuse(503, "Too many connections",
                         "the server holds as many connections as it allows; retry later",
                         extra=(b"retry-after: 1",), linger=False)
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_timer()
        super().connection_lost(exc)

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn's own adds advice to install a WebSocket library: esb serves no WebSocket
        # (the server runs with ws="none"), so the request is answered as plain HTTP.
        self.logger.info("upgrade request answered as plain HTTP/1.1 (esb speaks no "
                         "WebSocket or h2c)")

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        self._started = True
        self._unset_keepalive_if_required()
        completed = self._completed
        if not self._feed(data):
            return
        # What the parser buffers of an unfinished head: the whole read, unless a request
        # ended in it (pipelined: the read's bytes were mostly that request's, not the new
        # head's; that head is counted from the next read, so at most the limit plus a read).
        if self._reading_head and self._completed == completed:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, "Request header fields too large", self._too_big())

    def _feed(self, data: bytes) -> bool:
        """Give ``data`` to the parser; False when the connection was refused. After an
        Upgrade esb does not take, a fresh parser gets the rest (see :meth:`_read_on_as_http`):
        in a loop, as one read may hold thousands of such requests (a recursion overflowed)."""
        pending = [data]
        while pending:
            chunk = pending.pop(0)
            try:
                self.parser.feed_data(chunk)
            except httptools.HttpParserUpgrade as exc:
                self._unsupported_upgrade_warning()
                if self._refused_upgrade:
                    pending[:0] = [self._read_on_as_http(), memoryview(chunk)[exc.args[0]:]]
                else:  # a CONNECT: esb tunnels nothing; nothing after it is read
                    self._done = True
                    if self.cycle is not None:  # the app answers it, then the cycle closes
                        self.cycle.keep_alive = False
                        self.cycle.transport = _Lingering(self)  # type: ignore[assignment]
                    return False
            except Exception as exc:  # httptools' parser and callback errors
                refused = exc.__context__ if isinstance(exc.__context__, _Refused) else None
                if refused is not None:
                    self._refuse(refused.status, refused.title, refused.detail)
                else:
                    self.logger.warning("Invalid HTTP request received.")  # uvicorn's own line
                    self._refuse(400, "Bad request", "the request is not valid HTTP/1.1")
                return False
        return True

    def _read_on_as_http(self) -> bytes:
        """After an Upgrade esb does not take, the request goes on as HTTP/1.1 (RFC 9110
        §7.8: a server may ignore Upgrade). httptools has stopped after the headers and
        completed the request without a body (uvicorn would hand the app an empty body, and
        read the body as the next request): a fresh parser reads the same head again, without
        the upgrade (its callbacks skipped: the request is under way already), then the body
        by its own framing into the same request, then whatever follows on the connection.
        Makes that parser; returns the head for it."""
        self._refused_upgrade = False
        head = [b"%s %s HTTP/%s\r\n" % (self.scope["method"].encode("ascii"), self.url,
                                          self.scope["http_version"].encode("ascii"))]
        for name, value in self.headers:
            if name in (b"upgrade", b"http2-settings"):
                continue
            if name == b"connection":
                kept = [t.strip() for t in value.split(b",")
                        if t.strip().lower() not in (b"upgrade", b"http2-settings", b"")]
                if not kept:
                    continue
                value = b", ".join(kept)
            head.append(name + b": " + value + b"\r\n")
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # as uvicorn makes its parser
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._replaying = True
        return b"".join(head) + b"\r\n"

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "Bad request", "the request is not valid HTTP/1.1")

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._replaying:
            return
        super().on_message_begin()
        # (also when it began in the read that ended the one before: not a silent connection)
        self._started = self._in_request = True
        self._reading_head = True
        self._head_bytes = 0
        self._head_size = 0
        self._header_count = 0
        self._arm(self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        if self._replaying:
            return
        self._head_size += len(url)
        self._check_head_size()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._replaying:
            return
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Refused(431, "Request header fields too large",
                           f"more than {self.limits.max_headers} header fields")
        self._head_size += len(name) + len(value) + 4
        self._check_head_size()
        super().on_header(name, value)

    def _check_head_size(self) -> None:
        if self._head_size > self.limits.max_header_bytes:
            raise _Refused(431, "Request header fields too large", self._too_big())

    def _too_big(self) -> str:
        return f"the request line and headers exceed {self.limits.max_header_bytes} bytes"

    def on_headers_complete(self) -> None:
        if self._replaying:  # the request is under way: its body comes next
            self._replaying = False
            return
        self._reading_head = False
        self._disarm()
        if self._has_body():
            self._arm(self.limits.body_timeout)
        # (a CONNECT is never re-read: it has no body, and it would stop the parser again)
        self._refused_upgrade = self.parser.should_upgrade() \
            and self.parser.get_method() != b"CONNECT"
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._refused_upgrade:  # the parser's early end: the body is still to come
            return
        self._disarm()
        self._started = self._in_request = False
        self._completed += 1
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._done:  # refused or lingering: nothing more is served on this connection
            return
        super().on_response_complete()
        # Idle — uvicorn's keep-alive timer runs — unless a request is still being read: the
        # next one's head already begun (pipelined), or this one's body after an early
        # answer. Its limit stands (uvicorn's timer is cancelled by its next byte).
        if self.timeout_keep_alive_task is not None and not self._in_request:
            self._disarm()

    # -- helpers ------------------------------------------------------------------------------

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def _arm(self, seconds: float) -> None:
        """Start a phase's limit: ``seconds`` from now."""
        due = self._due = self.loop.time() + seconds
        if self._timer is None or self._timer_at > due:
            self._stop_timer()
            self._start_timer(due)

    def _disarm(self) -> None:
        """End the running phase's limit (its timer, if any, finds nothing due)."""
        self._due = None

    def _start_timer(self, at: float, then: Callable[[], object] | None = None) -> None:
        """The connection's one timer, at ``at``: it checks the limit due, or calls ``then``."""
        self._timer_at = at
        self._timer = self.loop.call_at(at, then or self._check_due)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_due(self) -> None:
        self._timer = None
        due = self._due
        if due is None:
            return
        if due - self.loop.time() > _EARLY:  # the limit was moved on meanwhile
            self._start_timer(due)
            return
        self._due = None
        self._timed_out()

    def _timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if not self._started:  # nothing of a request arrived: just close
            self._done = True
            self.transport.close()
            return
        phase = "headers" if self._reading_head else "body"
        limit = self.limits.header_timeout if self._reading_head else self.limits.body_timeout
        log.warning("slow client: request %s not received within %ss", phase, limit)
        if self.cycle is not None and not self._reading_head and self.cycle.response_started:
            self._linger()  # no answer can follow the one under way; the body may still come
            return
        self._refuse(408, "Request timeout",
                     f"the request {phase} did not arrive within {limit:g} s")

    def _refuse(self, status: int, title: str, detail: str, *,
                extra: tuple[bytes, ...] = (), linger: bool = True) -> None:
        self._done = True
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(problem_bytes(status, title, detail, extra_headers=extra))
            if linger:
                self._linger()
            else:
                self.transport.close()

    def _linger(self) -> None:
        """End the connection after what was written, without a reset: half-close it (the
        client reads the answer, then end of stream) and discard what it still sends until it
        closes too (uvicorn's ``eof_received`` lets the transport close then) or
        :data:`LINGER` seconds have passed."""
        self._done = True
        transport = self.transport
        if transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request still being answered (pipelined) can no longer follow this
            # answer: its cycle ends as on a lost connection (its sends are dropped), where a
            # write after the shut side would raise.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        transport.write_eof()
        self._disarm()
        self._stop_timer()
        self._start_timer(self.loop.time() + LINGER, transport.close)


class _Lingering:
    """The transport as a request cycle sees it once its connection is to end: ``close``
    lingers (:meth:`GuardedProtocol._linger`), everything else is the transport's."""

    def __init__(self, protocol: GuardedProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def close(self) -> None:
        self._protocol._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(limits: HttpLimits) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` class bound to ``limits`` (uvicorn takes a class)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})
