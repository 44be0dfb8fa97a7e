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
from collections.abc import Mapping
from typing import Any

import httptools
import httpx

from esb.bus.deadline import Deadlines
from esb.bus.reply import Reply

_Origin = tuple[str, str, int]

#: How often the answers being read are checked against their read timeout: one sweeper for
#: every request in flight (:class:`~esb.bus.deadline.Deadlines`) instead of a timer
#: per request (``asyncio.timeout``: ~5 µs a request, measured). A read timeout fires up to
#: this much late.
READ_SWEEP = 0.1


class _Answer:
    """httptools callbacks collecting one response."""

    __slots__ = ("body", "cookie", "delimited", "done", "encoded", "head", "headers",
                 "keep_alive", "parser", "received", "started", "status")

    def __init__(self, head: bool) -> None:
        self.status = 0
        self.received = False  # any byte of it came
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.done = self.started = self.keep_alive = False
        #: the body has a length or chunks (else it runs until the server closes)
        self.delimited = False
        #: a cookie was set, the body is encoded: answers the short path leaves to httpx
        self.cookie = self.encoded = False
        self.head = head  # an answer to HEAD has no body, whatever its headers say
        self.parser: Any = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower in (b"content-length", b"transfer-encoding"):
            self.delimited = True
        elif lower in _SET_COOKIE:
            self.cookie = True
        elif lower == b"content-encoding":
            self.encoded = True

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
        self._reads = Deadlines(READ_SWEEP)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        answer = await self.exchange(request.method, _origin(url, request), _head(request, body),
                                     body, request.extensions.get("timeout") or {}, request)
        return httpx.Response(answer.status, headers=answer.headers,
                              content=b"".join(answer.body), request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def exchange(self, method: str, origin: _Origin, head: bytes, body: bytes,
                       timeouts: dict[str, float | None], request: httpx.Request | None = None
                       ) -> _Answer:
        """One request (its head and body already encoded) on a pooled connection to
        ``origin``: the parsed answer. Raises httpx's exceptions (``request`` is what they
        name; None when the caller built no :class:`httpx.Request`)."""
        slots = self._slots
        if slots.locked():  # a timer only when a wait is possible
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await slots.acquire()
            except TimeoutError as exc:
                raise httpx.PoolTimeout("no free connection in time", request=request) from exc
        else:
            await slots.acquire()
        try:
            for _ in range(2):
                conn = await self._connection(origin, request, timeouts.get("connect"))
                try:
                    return await self._exchange(conn, origin, method, head, body, timeouts,
                                                request)
                except _Stale:
                    conn.close()
            raise httpx.RemoteProtocolError("the server closed the connection without an "
                                            "answer", request=request)
        finally:
            slots.release()

    async def _connection(self, origin: _Origin, request: httpx.Request | None,
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

    async def _exchange(self, conn: _Connection, origin: _Origin, method: str, head: bytes,
                        body: bytes, timeouts: dict[str, float | None],
                        request: httpx.Request | None) -> _Answer:
        reused = conn.used
        conn.used = True
        answer = _Answer(method == "HEAD")
        parser = answer.parser = httptools.HttpResponseParser(answer)
        try:
            writer = conn.writer
            writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                writer.write(body)
            if writer.transport.get_write_buffer_size():
                # Not all of it went out at once: wait (a timer only then). A connection
                # lost meanwhile shows as the end of the answer below, as it would here.
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
            read = timeouts.get("read")
            if read is None:
                await _read(conn, answer, reused, request)
            else:
                await self._reads.run(_read(conn, answer, reused, request), read)
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
            # The stream reader keeps the error, and its traceback the frames that hold the
            # reader (and the request's body): a reference cycle, unless the traceback goes.
            exc = exc.with_traceback(None)
            if reused and not answer.received:
                raise _Stale from exc
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        except BaseException:
            conn.close()
            raise
        finally:
            # The parser holds the answer's bound methods: without this the pair is a
            # reference cycle, left for the cyclic GC (most of a delivery's garbage).
            answer.parser = None
        answer.status = parser.get_status_code()
        if answer.keep_alive and not self._closed \
                and self._idle_count < self._max_idle:
            self._idle[origin].append(conn)
            self._idle_count += 1
        else:
            conn.close()
        return answer

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
        self._idle_count = 0


async def _read(conn: _Connection, answer: _Answer, reused: bool,
                request: httpx.Request | None) -> None:
    """Read ``conn`` into ``answer`` until the answer is complete (``_Stale``: a reused
    connection closed before a byte of it came)."""
    parser = answer.parser
    while not answer.done:
        data = await conn.reader.read(65536)
        if not data:
            if reused and not answer.received:
                raise _Stale
            # The close ends a body that has no length (HTTP/1.0 style).
            answer.done = answer.started and not answer.delimited
            answer.keep_alive = False
            if not answer.done:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection mid-answer", request=request)
            break
        answer.received = True
        parser.feed_data(data)


def _origin(url: httpx.URL, request: httpx.Request | None = None) -> _Origin:
    scheme = url.scheme
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
    return scheme, url.host, url.port or (443 if scheme == "https" else 80)


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
#: Headers httpx sets itself: a request naming one takes httpx's full path.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "cookie"})


class _Target:
    """:meth:`LeanClient._target`'s answer: the URL it was built for (a held reference, so its
    id is not reused while cached), the request line with Host, and the pool's origin."""

    __slots__ = ("line", "origin", "url")

    def __init__(self, url: httpx.URL, line: bytes, origin: _Origin) -> None:
        self.url, self.line, self.origin = url, line, origin


#: URLs whose request line a client keeps (cleared whole when full).
_MAX_TARGETS = 256


class LeanClient(httpx.AsyncClient):
    """:class:`httpx.AsyncClient` with a :class:`_SetCookiesOnly` jar (same behaviour), and
    :meth:`send_plain`: a plain request straight on the transport."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = kwargs.get("cookies")
        # What :meth:`send_plain` writes the same way for every request (see _target).
        self._targets: dict[tuple[str, int], _Target] = {}
        self._defaults: tuple[list[Any], list[tuple[str, bytes]]] = ([], [])
        self._timeouts: tuple[Any, dict[str, float | None]] = (None, {})

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _SetCookiesOnly(cookies)

    def _has_cookies(self) -> bool:
        # The standard library's jar keeps its cookies in ``_cookies`` (a dict by domain):
        # empty means no cookie at all, without walking the jar (~0.9 µs a request).
        cookies = getattr(self._jar.jar, "_cookies", None)
        return bool(self._jar) if cookies is None or cookies else False

    def _target(self, method: str, url: httpx.URL) -> _Target | None:
        """The request line, Host header and origin of ``method url``, encoded once per URL
        object (an outbound adapter parses its URL once): httpx's URL properties cost ~2 µs
        a request. None when the URL carries credentials or is not ASCII."""
        key = (method, id(url))
        target = self._targets.get(key)
        if target is not None and target.url is url:
            return target
        if url.userinfo:
            return None
        try:
            line = b"".join([method.encode("ascii"), b" ", url.raw_path or b"/",
                             b" HTTP/1.1\r\nHost: ", url.netloc, b"\r\n"])
        except UnicodeEncodeError:
            return None
        if len(self._targets) >= _MAX_TARGETS:  # URLs built per message (templates)
            self._targets.clear()
        target = self._targets[key] = _Target(url, line, _origin(url))
        return target

    def _default_lines(self) -> list[tuple[str, bytes]]:
        """The client's own headers (``headers=`` of the client; httpx's defaults), each
        as its lower-cased name and its encoded line; re-read when they were changed."""
        current = self._headers._list  # (raw name, lower-cased name, value), in order
        seen, lines = self._defaults
        if current != seen:
            lines = [(lower.decode("ascii"), raw + b": " + value + b"\r\n")
                     for raw, lower, value in current]
            self._defaults = (list(current), lines)
        return lines

    async def send_plain(self, method: str, url: httpx.URL, headers: Mapping[str, str],
                         content: bytes | None, *, answer: bool = False,
                         timeout: httpx.Timeout | None = None
                         ) -> httpx.Response | int | Reply | None:
        """``request(method, url, content=content, headers=headers)`` without building
        httpx's request and response objects (together ~40 % of a delivery's client CPU):
        the status of a 2xx answer that sets no cookie — with ``answer``, that answer as a
        :class:`~esb.bus.reply.Reply` (status, headers as ``dict(response.headers)`` gives
        them, body; one with a ``Content-Encoding`` is left to httpx, which decodes it); any
        other answer as the :class:`httpx.Response` :meth:`request` returns (built only then,
        so error texts, ``Retry-After`` and cookies are read as always); None when this call
        needs httpx's full path (cookies to send, hooks, a client-wide auth or credentials in
        the URL, query parameters of the client, a proxy, a header it sets itself, a value
        that is not ASCII) — the caller then uses :meth:`request`. ``timeout``: this call's,
        as ``request(..., timeout=...)`` takes it (default: the client's). Raises httpx's
        exceptions, as :meth:`request` does."""
        transport = self._transport
        if type(transport) is not LeanTransport or self._mounts or self.is_closed \
                or self._auth is not None or self._event_hooks["request"] \
                or self._event_hooks["response"] or self.params or self._has_cookies():
            return None
        target = self._target(method, url)
        if target is None:  # (credentials in the URL: httpx turns them into Basic auth)
            return None
        body = content or b""
        given = {name.lower() for name in headers}
        if given & _OWN_HEADERS:
            return None
        parts = [target.line]
        for lower, line in self._default_lines():
            if lower not in given:
                parts.append(line)
        try:
            parts.append("".join([f"{name}: {text}\r\n" for name, text in headers.items()]
                                 ).encode("ascii"))
        except UnicodeEncodeError:
            return None
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE"):
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts.append(b"\r\n")
        # (the call's own timeout, else the client's: its dict kept for the next call)
        timeout = timeout or self._timeout
        if timeout is not self._timeouts[0]:
            self._timeouts = (timeout, timeout.as_dict())
        got = await transport.exchange(method, target.origin, b"".join(parts), body,
                                       self._timeouts[1])
        status = got.status
        if 200 <= status < 300:
            if not answer:
                if not got.cookie:
                    return status
            elif not (got.cookie or got.encoded):
                read = header_dict(got.headers)
                return Reply(status, read, b"".join(got.body), read.get("content-type"))
        request = self.build_request(method, url, content=content, headers=headers,
                                     timeout=timeout)
        response = httpx.Response(status, headers=got.headers,
                                  content=b"".join(got.body), request=request,
                                  extensions={"http_version": b"HTTP/1.1"})
        self._jar.extract_cookies(response)
        return response


def header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """``dict(httpx.Headers(raw))`` without the object: names lower-cased, a repeated
    header's values joined with ``", "``, all decoded as ASCII, else UTF-8, else Latin-1
    (httpx's choice, made for the whole set at once)."""
    encoding = "ascii"
    if not all(name.isascii() and value.isascii() for name, value in raw):
        encoding = "utf-8"
        try:
            for name, value in raw:
                name.decode(encoding)
                value.decode(encoding)
        except UnicodeDecodeError:
            encoding = "iso-8859-1"
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.lower().decode(encoding)
        text = value.decode(encoding)
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def lean_client(timeout: float, **transport: Any) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` on a :class:`LeanTransport`."""
    return LeanClient(transport=LeanTransport(**transport), timeout=timeout,
                      follow_redirects=False, trust_env=False)
