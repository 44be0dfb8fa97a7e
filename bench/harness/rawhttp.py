"""A minimal HTTP/1.1 POST client over asyncio streams with keep-alive connections: the lean
relay's way out (``bench/ceiling.py --client raw``). It does what a relay needs and nothing
else — no redirects, no chunked responses, no TLS — so the lean relay's cost per message is
the floor a Python relay can reach, not a library's."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class RawHttpClient:
    """``await post(body, content_type) -> status``; connections are reused."""

    def __init__(self, url: str, max_connections: int = 128) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                      "Connection: keep-alive\r\n").encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, body: bytes, content_type: str) -> int:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await asyncio.open_connection(
                self.host, self.port)
            reader, writer = conn
            try:
                writer.write(self._head + f"Content-Type: {content_type}\r\nContent-Length: "
                             f"{len(body)}\r\n\r\n".encode() + body)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                writer.close()
                raise
            self._idle.append(conn)
            return status

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
