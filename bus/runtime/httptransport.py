"""The daemon's outbound HTTP/1.1 transport: httpx's API over a lean keep-alive pool.

Why not a library's transport: measured per 1 KiB POST to a local server (CPU of the client
process, docs/performance.md): httpx over its default httpcore transport ~3 ms, over
``httpx-aiohttp`` ~290 µs, over this transport ~140 µs — of which httpx itself is ~115 µs.
A relay's whole hop costs ~200 µs, so the transport was the largest single cost of a delivery.

What it does: HTTP/1.1 over asyncio streams (TLS with the context it is given), responses
parsed by ``httptools`` (the C parser uvicorn uses: lengths, chunked bodies, keep-alive), idle
connections reused per origin, a connection limit, httpx's timeouts (connect, read, write, pool)
and exceptions (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError`` ...), so adapters see
no difference. Not supported, by design: HTTP/2, proxies (a client configured with a proxy uses
httpx's own transport), ``Expect: 100-continue``, request bodies that are not in memory (they
are read first). A reused connection the server closed while it was idle is retried once on a
new one when not a byte of the answer came back — the request was not processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import defaultdict
from typing import Any

import httptools
import httpx

_Origin = tuple[str, str, int]


class _Answer:
    """httptools callbacks collecting one response."""

    __slots__ = ("body", "delimited", "done", "head", "headers", "keep_alive", "parser",
                 "started")

    def __init__(self, head: bool) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.done = self.started = self.keep_alive = False
        #: the body has a length or chunks (else it runs until the server closes)
        self.delimited = False
        self.head = head  # an answer to HEAD has no body, whatever its headers say
        self.parser: Any = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.started = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.head:
            self.done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = False

    def close(self) -> None:
        self.writer.close()


class _Stale(Exception):
    """A reused connection ended before any byte of the answer: safe to send again."""


class LeanTransport(httpx.AsyncBaseTransport):
    """An :class:`httpx.AsyncBaseTransport` for plain HTTP/1.1 and HTTPS."""

    def __init__(self, *, max_connections: int = 512, max_idle: int = 128,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle
        self._idle: dict[_Origin, list[_Connection]] = defaultdict(list)
        self._idle_count = 0
        self._ssl = ssl_context
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        if origin[0] not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {origin[0]!r}",
                                            request=request)
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        head = _head(request, body)
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection in time", request=request) from exc
        try:
            for _ in range(2):
                conn = await self._connection(origin, request, timeouts.get("connect"))
                try:
                    return await self._exchange(conn, origin, request, head, body, timeouts)
                except _Stale:
                    conn.close()
            raise httpx.RemoteProtocolError("the server closed the connection without an "
                                            "answer", request=request)
        finally:
            self._slots.release()

    async def _connection(self, origin: _Origin, request: httpx.Request,
                          timeout: float | None) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        scheme, host, port = origin
        context: ssl.SSLContext | None = None
        if scheme == "https":
            context = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None,
                    limit=1 << 20)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out",
                                       request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, origin: _Origin, request: httpx.Request,
                        head: bytes, body: bytes, timeouts: dict[str, float | None]
                        ) -> httpx.Response:
        reused = conn.used
        conn.used = True
        answer = _Answer(request.method == "HEAD")
        parser = answer.parser = httptools.HttpResponseParser(answer)
        got_bytes = False
        try:
            conn.writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                conn.writer.write(body)
            async with asyncio.timeout(timeouts.get("write")):
                await conn.writer.drain()
            async with asyncio.timeout(timeouts.get("read")):
                while not answer.done:
                    data = await conn.reader.read(65536)
                    if not data:
                        if reused and not got_bytes:
                            raise _Stale
                        # The close ends a body that has no length (HTTP/1.0 style).
                        answer.done = answer.started and not answer.delimited
                        answer.keep_alive = False
                        if not answer.done:
                            raise httpx.RemoteProtocolError(
                                "the server closed the connection mid-answer", request=request)
                        break
                    got_bytes = True
                    parser.feed_data(data)
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout("the server did not answer in time",
                                    request=request) from exc
        except httptools.HttpParserError as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"malformed answer: {exc}",
                                            request=request) from exc
        except (ConnectionError, OSError) as exc:
            conn.close()
            if reused and not got_bytes:
                raise _Stale from exc
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        except BaseException:
            conn.close()
            raise
        status = parser.get_status_code()
        if answer.keep_alive and not self._closed \
                and self._idle_count < self._max_idle:
            self._idle[origin].append(conn)
            self._idle_count += 1
        else:
            conn.close()
        return httpx.Response(status, headers=answer.headers, content=b"".join(answer.body),
                              request=request, extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
        self._idle_count = 0


def _head(request: httpx.Request, body: bytes) -> bytes:
    """The request line and headers (httpx has set Host and Content-Length)."""
    url = request.url
    target = url.raw_path or b"/"
    parts = [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    has_length = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"content-length":
            has_length = True
        elif lower == b"transfer-encoding":
            continue  # the body is in memory: always sent with a length
        parts += [name, b": ", value, b"\r\n"]
    if not has_length and (body or request.method not in ("GET", "HEAD", "DELETE")):
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    return b"".join(parts)


class _SetCookiesOnly(httpx.Cookies):
    """httpx's cookie jar, reading a response only when it sets a cookie.

    httpx hands every response to the standard library's cookie policy, which wraps request
    and response and parses the URL again (~7 % of a delivery's CPU for a destination that
    sets no cookie, the usual case). A response that sets one is read exactly as before."""

    def extract_cookies(self, response: httpx.Response) -> None:
        for name, _ in response.headers.raw:
            if name.lower() in _SET_COOKIE:
                super().extract_cookies(response)
                return


_SET_COOKIE = (b"set-cookie", b"set-cookie2")


class LeanClient(httpx.AsyncClient):
    """:class:`httpx.AsyncClient` with a :class:`_SetCookiesOnly` jar (same behaviour)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = kwargs.get("cookies")

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _SetCookiesOnly(cookies)


def lean_client(timeout: float, **transport: Any) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` on a :class:`LeanTransport`."""
    return LeanClient(transport=LeanTransport(**transport), timeout=timeout,
                      follow_redirects=False, trust_env=False)
