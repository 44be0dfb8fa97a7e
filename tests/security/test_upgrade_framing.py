"""A request with an Upgrade esb does not take is framed exactly as the same request without
it: the server's protocol (bus/runtime/httpguard.py) in-process, bytes in, answers out, for
many framings and for every way the bytes can be split across reads."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from esb.bus.runtime.httpguard import HttpLimits, guarded_protocol

Seen = list[tuple[str, str, bytes]]


async def echo(scope: dict[str, Any], receive: Any, send: Any, seen: Seen) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen.append((scope["method"], scope["path"], body))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out, self.closed, self.eof = b"", False, False

    @property
    def ended(self) -> bool:
        """The server ended the connection: closed it, or shut its side (lingering)."""
        return self.closed or self.eof

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.eof:  # as asyncio's and uvloop's transports do
            raise RuntimeError("Cannot call write() after write_eof()")
        if not self.closed:
            self.out += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 1), "peername": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def serve(reads: list[bytes]) -> tuple[Seen, list[bytes], bool]:
    """The requests the app got, the statuses answered, whether the connection was closed."""
    seen: Seen = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await echo(scope, receive, send, seen)

    async def main() -> Transport:
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None,
                                ws="none", loop="none")
        config.load()
        state = ServerState()
        protocol = guarded_protocol(HttpLimits(header_timeout=5, body_timeout=5))(
            config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        for data in reads:
            if not transport.ended:  # what a client sends after the end is not served
                protocol.data_received(data)
            for _ in range(3):
                await asyncio.sleep(0)
        for _ in range(200):  # until every request in flight has been answered
            if not state.tasks and not protocol.pipeline:
                break
            await asyncio.sleep(0)
        if not transport.closed:
            protocol.connection_lost(None)
        return transport

    transport = asyncio.run(main())
    return seen, re.findall(rb"HTTP/1.1 (\d{3})", transport.out), transport.ended


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)  # 400s, upgrades, cut requests: many here, on purpose
    yield
    logging.disable(logging.NOTSET)


H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n"
WEBSOCKET = b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n"
FRAMINGS = [b"", b"Content-Length: 3\r\n", b"Content-Length: 0\r\n", b"Content-Length:3 \r\n",
            b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: Chunked \r\n",
            b"Transfer-Encoding: identity\r\n", b"Transfer-Encoding: chunked, identity\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length: 3\r\nContent-Length: 3\r\n", b"Content-Length: 3,3\r\n",
            b"X: a\r\n b\r\nContent-Length: 3\r\n", b"Connection: close\r\nContent-Length: 3\r\n",
            b"Expect: 100-continue\r\nContent-Length: 3\r\n"]
BODIES = [b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\nX: y\r\n\r\n", b"",
          b"3\nabc\n0\n\n", b"3 \r\nabc\r\n0\r\n\r\n"]
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
@pytest.mark.parametrize("upgrade", [H2C, WEBSOCKET], ids=["h2c", "websocket"])
def test_an_upgrade_changes_no_framing(version: bytes, upgrade: bytes) -> None:
    """Whatever the Content-Length, Transfer-Encoding, chunks and what follows: the same
    requests, bodies, statuses and fate of the connection as without the Upgrade (which keeps
    the other Connection tokens)."""
    without = b"".join(line + b"\r\n" for line in upgrade.split(b"\r\n")
                       if line and not line.startswith((b"Upgrade:", b"HTTP2-Settings:")))
    without = without.replace(b", Upgrade", b"").replace(b"Connection: Upgrade\r\n", b"")
    for framing, body in itertools.product(FRAMINGS, BODIES):
        head = b"POST /a HTTP/" + version + b"\r\nHost: x\r\n"
        plain = serve([head + without + framing + b"\r\n" + body + NEXT])
        upgraded = serve([head + upgrade + framing + b"\r\n" + body + NEXT])
        assert upgraded == plain, (framing, body)


def test_bytes_split_anywhere_are_read_the_same() -> None:
    """Two upgrade requests (one Content-Length, one chunked with an extension and a
    trailer), a bodiless one and a plain one, on one connection, split in two at every
    position and byte by byte."""
    data = (b"POST /a HTTP/1.1\r\nHost: x\r\n" + H2C + b"Content-Length: 3\r\n\r\nabc"
            + b"POST /b HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET
            + b"Transfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: t\r\n\r\n"
            + b"GET /c HTTP/1.1\r\nHost: x\r\n" + H2C + b"\r\n"
            + b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nzz")
    want = ([("POST", "/a", b"abc"), ("POST", "/b", b"abcde"), ("GET", "/c", b""),
             ("POST", "/d", b"zz")], [b"200"] * 4, True)
    for i in range(1, len(data)):
        assert serve([data[:i], data[i:]]) == want, i
    assert serve([bytes([b]) for b in data]) == want


def test_a_connect_ends_the_connection_however_split() -> None:
    connect = b"CONNECT /a HTTP/1.1\r\nHost: x\r\n\r\n"
    for reads in ([connect + NEXT], [connect, NEXT]):
        assert serve(reads) == ([("CONNECT", "/a", b"")], [b"200"], True)


def test_a_refusal_behind_a_request_not_yet_answered_ends_the_connection_cleanly() -> None:
    """A pipelined head refused (431) while the request before it waits for its handler: the
    431 is written and the connection ended; the earlier request is not handed to the app
    (as on a lost connection: its sender never got an answer and retries) and nothing is
    written after the end (a write after the shut side would raise)."""
    one = b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    two = b"GET /two HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    seen, statuses, ended = serve([one + two])
    assert statuses == [b"431"] and ended and seen == []
