"""rest outbound against a real HTTP server: what each answer (or no answer) means.

2xx accepted; 408, 425, 429 and 5xx transient (``Retry-After`` kept); other 4xx and 3xx
permanent; a timeout or a refused connection transient. And what the destination receives:
the URL filled from the envelope, the idempotency key, the correlation id, CloudEvents headers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from esb.adapters.rest.outbound import RestOutbound
from esb.adapters.rest.settings import RestOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError, TransientError


class Peer:
    """Answers ``status`` (and ``headers``) to everything; remembers the last request."""

    def __init__(self) -> None:
        self.status, self.headers, self.delay = 200, {}, 0.0
        self.last: dict[str, Any] = {}
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                peer.last = {"path": self.path, "body": body,
                             "headers": {k.lower(): v for k, v in self.headers.items()}}
                time.sleep(peer.delay)
                self.send_response(peer.status)
                for k, v in peer.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer() -> Any:
    p = Peer()
    yield p
    p.close()


def envelope() -> Envelope:
    return Envelope(source="shop", type="order.created", data={"n": 7, "city": "Köln/Süd"},
                    idempotencykey="order-7", correlationid="corr-7")


def send(url: str, timeout: float = 5, **settings: Any) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(timeout=timeout) as client:
            out = RestOutbound(RestOutboundSettings(url=url, **settings),
                               OutboundContext("out", Path("."), lambda: client))
            await out.start()
            await out.send(envelope())

    asyncio.run(go())


def test_accepted_request_carries_url_fields_key_and_correlation(peer: Peer) -> None:
    send(peer.url + "/orders/{data.n}/{data.city}", cloudevents="binary")
    assert peer.last["path"] == "/orders/7/K%C3%B6ln%2FS%C3%BCd"
    h = peer.last["headers"]
    assert h["idempotency-key"] == "order-7" and h["x-correlation-id"] == "corr-7"
    assert h["content-type"] == "application/json"
    assert (h["ce-type"], h["ce-source"], h["ce-specversion"]) == ("order.created", "shop",
                                                                   "1.0")


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_answers(peer: Peer, status: int) -> None:
    peer.status, peer.headers = status, {"Retry-After": "3"}
    with pytest.raises(TransientError) as info:
        send(peer.url)
    assert info.value.status == status
    if status in (429, 503):
        assert info.value.retry_after == 3


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 410, 422])
def test_permanent_answers(peer: Peer, status: int) -> None:
    peer.status = status
    with pytest.raises(PermanentError) as info:
        send(peer.url)
    assert info.value.status == status
    assert str(status) in str(info.value)


def test_a_timeout_is_transient(peer: Peer) -> None:
    peer.delay = 1.0
    with pytest.raises(TransientError, match="timed out"):
        send(peer.url, timeout=0.2)


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="ConnectError"):
        send(f"http://127.0.0.1:{port}/x")


def test_a_missing_url_field_is_permanent(peer: Peer) -> None:
    with pytest.raises(PermanentError, match=r"data\.missing"):
        send(peer.url + "/{data.missing}")


def test_a_key_that_is_not_ascii_is_sent_percent_encoded(peer: Peer) -> None:
    """A key from a structured CloudEvent may hold any character; HTTP headers take ASCII.
    It is percent-encoded (the same key, the same header) instead of failing every attempt."""

    async def go() -> None:
        async with httpx.AsyncClient() as client:
            out = RestOutbound(RestOutboundSettings(url=peer.url),
                               OutboundContext("out", Path("."), lambda: client))
            await out.start()
            await out.send(Envelope(source="s", type="t", data={},
                                    idempotencykey="commande-é 7", correlationid="réf"))

    asyncio.run(go())
    assert peer.last["headers"]["idempotency-key"] == "commande-%C3%A9%207"
    assert peer.last["headers"]["x-correlation-id"] == "r%C3%A9f"
