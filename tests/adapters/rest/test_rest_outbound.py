"""rest outbound against a real HTTP server: what each answer (or no answer) means.

2xx accepted; 408, 425, 429 and 5xx transient (``Retry-After`` kept); other 4xx and 3xx
permanent; a timeout or a refused connection transient. And what the destination receives:
the URL filled from the envelope, the idempotency key, the correlation id, CloudEvents headers.
Every test runs with a plain httpx client and with the daemon's own (whose short path for
plain requests must mean the same).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from esbtest.sink import Received, Sink

from esb.adapters.rest.outbound import RestOutbound
from esb.adapters.rest.settings import RestOutboundSettings
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError, TransientError
from esb.bus.runtime.http import make_http_client

ClientFactory = Any  # (timeout) -> httpx.AsyncClient
_make_client: ClientFactory = None


@pytest.fixture(autouse=True, params=["httpx", "daemon"])
def client_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which client ``send`` uses: httpx's own, or the daemon's (make_http_client)."""
    factory = (lambda timeout: httpx.AsyncClient(timeout=timeout)) \
        if request.param == "httpx" else (lambda timeout: make_http_client(timeout))
    monkeypatch.setitem(globals(), "_make_client", factory)
    return str(request.param)


def last(sink: Sink) -> Received:
    """The last request the destination saw, whatever it answered."""
    return sink.requests[-1][0]


def answer(sink: Sink, status: int, headers: dict[str, str] | None = None,
           delay: float = 0.0) -> None:
    def reply(rec: Received) -> tuple[int, dict[str, str]]:
        time.sleep(delay)
        return status, headers or {}

    sink.status_for = reply


def envelope() -> Envelope:
    return Envelope(source="shop", type="order.created", data={"n": 7, "city": "Köln/Süd"},
                    idempotencykey="order-7", correlationid="corr-7")


def send(url: str, timeout: float = 5, env: Envelope | None = None, **settings: Any) -> None:
    async def go() -> None:
        async with _make_client(timeout) as client:
            out = RestOutbound(RestOutboundSettings(url=url, **settings),
                               OutboundContext("out", Path("."), lambda: client))
            await out.start()
            await out.send(env or envelope())

    asyncio.run(go())


def test_accepted_request_carries_url_fields_key_and_correlation(sink: Sink) -> None:
    send(sink.url + "/orders/{data.n}/{data.city}", cloudevents="binary")
    assert last(sink).path == "/orders/7/K%C3%B6ln%2FS%C3%BCd"
    h = last(sink).headers
    assert h["idempotency-key"] == "order-7" and h["x-correlation-id"] == "corr-7"
    assert h["content-type"] == "application/json"
    assert (h["ce-type"], h["ce-source"], h["ce-specversion"]) == ("order.created", "shop",
                                                                   "1.0")


def test_binary_mode_carries_the_esb_extensions_structured_mode_does(sink: Sink) -> None:
    env = envelope().model_copy(update={"esbroute": "orders", "esbdestination": "erp",
                                        "esbrouteversion": 3}).with_hop("accepted", "host-a")
    send(sink.url, env=env, cloudevents="structured")
    structured = orjson.loads(last(sink).body)
    send(sink.url, env=env, cloudevents="binary")
    h = last(sink).headers
    ext = {k for k in structured if k.startswith("esb") or k in ("idempotencykey",
                                                                  "correlationid")}
    assert {"esbroute", "esbdestination", "esbrouteversion", "esbhops"} <= ext
    for name in ext:
        value = structured[name]
        got = h[f"ce-{name}"]
        assert (got if isinstance(value, str) else orjson.loads(got)) == value, name


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_answers(sink: Sink, status: int) -> None:
    answer(sink, status, {"Retry-After": "3"})
    with pytest.raises(TransientError) as info:
        send(sink.url)
    assert info.value.status == status
    if status in (429, 503):
        assert info.value.retry_after == 3


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 410, 422])
def test_permanent_answers(sink: Sink, status: int) -> None:
    answer(sink, status)
    with pytest.raises(PermanentError) as info:
        send(sink.url)
    assert info.value.status == status
    assert str(status) in str(info.value)


def test_a_timeout_is_transient(sink: Sink) -> None:
    answer(sink, 200, delay=1.0)
    with pytest.raises(TransientError, match="timed out"):
        send(sink.url, timeout=0.2)


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="ConnectError"):
        send(f"http://127.0.0.1:{port}/x")


def test_a_missing_url_field_is_permanent(sink: Sink) -> None:
    with pytest.raises(PermanentError, match=r"data\.missing"):
        send(sink.url + "/{data.missing}")


def test_a_key_that_is_not_ascii_is_sent_percent_encoded(sink: Sink) -> None:
    """A key from a structured CloudEvent may hold any character; HTTP headers take ASCII.
    It is percent-encoded (the same key, the same header) instead of failing every attempt."""

    send(sink.url, env=Envelope(source="s", type="t", data={},
                                idempotencykey="commande-é 7", correlationid="réf"))
    assert last(sink).headers["idempotency-key"] == "commande-%C3%A9%207"
    assert last(sink).headers["x-correlation-id"] == "r%C3%A9f"
