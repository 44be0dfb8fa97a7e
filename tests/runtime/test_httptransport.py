"""The lean outbound transport against real sockets: a small asyncio HTTP server whose answers
the tests choose byte for byte (lengths, chunked and close-delimited bodies, idle closes,
silence, garbage), and TLS with a certificate made for the test."""

from __future__ import annotations

import asyncio
import datetime
import gc
import gzip
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from esbtest.cycles import CyclesLeft

from esb.bus.reply import Reply
from esb.bus.runtime.httptransport import header_dict, lean_client

Answer = Callable[[bytes], bytes | None]  # request bytes -> raw answer (None: say nothing)


class Server:
    """Answers each request on a connection with ``answer(request)``; counts connections."""

    def __init__(self, answer: Answer, close_after: int | None = None) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                raw = self.answer(head + body)
                if raw is None:
                    await asyncio.sleep(30)
                    return
                writer.write(raw)
                await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve(server: Server, context: ssl.SSLContext | None = None
                ) -> tuple[asyncio.AbstractServer, str]:
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    port = srv.sockets[0].getsockname()[1]
    return srv, f"{'https' if context else 'http'}://127.0.0.1:{port}"


def ok(body: bytes = b"ok", extra: bytes = b"") -> Answer:
    return lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra,
                                                                             body)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with lean_client(5.0) as c:
        yield c


async def test_keep_alive_reuses_one_connection_and_sends_what_httpx_built(
        client: httpx.AsyncClient) -> None:
    server = Server(ok(b'{"a": 1}', b"Content-Type: application/json\r\n"))
    srv, url = await serve(server)
    async with srv:
        for i in range(5):
            r = await client.post(f"{url}/in/x?y=1&z=%20", content=b"payload-%d" % i,
                                  headers={"Idempotency-Key": f"k{i}"})
            assert (r.status_code, r.json(), r.headers["content-type"]) == (
                200, {"a": 1}, "application/json")
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /in/x?y=1&z=%20 HTTP/1.1\r\n")
        assert b"\r\nIdempotency-Key: k0\r\n" in first and first.endswith(b"payload-0")
        assert b"\r\nContent-Length: 9\r\n" in first


async def test_cookies_a_destination_sets_are_kept_as_httpx_keeps_them(
        client: httpx.AsyncClient) -> None:
    answers = iter([ok(b"plain")(b""), ok(b"set", b"SET-COOKIE: session=abc; Path=/\r\n")(b""),
                    ok(b"plain")(b""), ok(b"plain")(b"")])
    server = Server(lambda _: next(answers))
    srv, url = await serve(server)
    async with srv:
        for _ in range(4):
            assert (await client.post(url + "/", content=b"x")).status_code == 200
    sent = [b"\r\nCookie: session=abc\r\n" in r for r in server.requests]
    assert sent == [False, False, True, True]
    assert dict(client.cookies) == {"session": "abc"}


async def test_chunked_close_delimited_and_head_answers(client: httpx.AsyncClient) -> None:
    chunked = Server(lambda _: b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    closing = Server(lambda _: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end",
                     close_after=1)
    head = Server(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    for server, call, expected in (
            (chunked, "post", (201, b"abcde")), (closing, "post", (200, b"to the end")),
            (head, "head", (200, b""))):
        srv, url = await serve(server)
        async with srv:
            r = await getattr(client, call)(url + "/")
            assert (r.status_code, r.content) == expected
            r = await getattr(client, call)(url + "/")  # the connection state stays right
            assert (r.status_code, r.content) == expected


async def test_an_idle_connection_the_server_closed_is_replaced(
        client: httpx.AsyncClient) -> None:
    server = Server(ok(), close_after=1)  # closes after each answer, without saying so
    srv, url = await serve(server)
    async with srv:
        for _ in range(3):
            assert (await client.post(url, content=b"x")).status_code == 200
            await asyncio.sleep(0.05)
        assert len(server.requests) == 3  # each sent once
        assert server.connections == 3


async def test_failures_are_httpx_errors(client: httpx.AsyncClient, unused_tcp_port: int
                                         ) -> None:
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{unused_tcp_port}/", content=b"x")
    silent = Server(lambda _: None)
    srv, url = await serve(silent)
    async with srv:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, content=b"x", timeout=0.3)
    garbage = Server(lambda _: b"SMTP ready\r\n\r\n")
    srv, url = await serve(garbage)
    async with srv:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")
    cut = Server(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close_after=1)
    srv, url = await serve(cut)
    async with srv:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")


async def test_a_large_body_and_the_pool_limit() -> None:
    server = Server(lambda req: ok(str(len(req)).encode())(req))
    srv, url = await serve(server)
    big = b"b" * 300_000
    async with srv, lean_client(5.0, max_connections=2) as client:
        answers = await asyncio.gather(*(client.post(url, content=big) for _ in range(6)))
        assert all(int(a.text) > 300_000 for a in answers)
        assert server.connections <= 2


def _certificate(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    return server, client


async def test_https_with_the_context_given_and_an_untrusted_server_refused(
        tmp_path: Path) -> None:
    server_ctx, client_ctx = _certificate(tmp_path)
    srv, url = await serve(Server(ok(b"secure")), server_ctx)
    async with srv:
        async with lean_client(5.0, ssl_context=client_ctx) as trusting:
            assert (await trusting.post(url, content=b"x")).text == "secure"
        async with lean_client(5.0) as default:  # the system's CAs do not know this one
            with pytest.raises(httpx.ConnectError):
                await default.post(url, content=b"x")


async def test_a_plain_request_on_the_short_path_sends_what_httpx_sends(
        client: httpx.AsyncClient) -> None:
    """``send_plain`` writes the bytes the full path writes; a 2xx answer is its status, any
    other answer the httpx.Response the full path returns."""
    answers = iter([ok(b"a")(b""), ok(b"b")(b""),
                    b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nlate"])
    server = Server(lambda _: next(answers))
    srv, url = await serve(server)
    headers = {"Idempotency-Key": "k1", "Content-Type": "application/json",
               "User-Agent": "esb-test"}
    async with srv:
        target = httpx.URL(f"{url}/in/x?y=1")
        full = await client.request("POST", target, content=b'{"n": 1}', headers=headers)
        short = await client.send_plain("POST", target, headers, b'{"n": 1}')  # type: ignore[attr-defined]
        failed = await client.send_plain("POST", target, headers, b"{}")  # type: ignore[attr-defined]
    assert full.status_code == 200 and short == 200
    assert server.requests[0] == server.requests[1]
    assert isinstance(failed, httpx.Response)
    assert (failed.status_code, failed.headers["retry-after"], failed.text) == (503, "2", "late")
    assert failed.request.headers["idempotency-key"] == "k1"


async def test_a_read_answer_on_the_short_path_is_what_the_full_path_reads(
        client: httpx.AsyncClient) -> None:
    """With ``answer``, a 2xx answer comes back as a Reply holding what request/reply reads
    from httpx's response (status, ``dict(headers)``, body, content type); a compressed
    answer is left to httpx, which decodes it."""
    plain = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Tag: a\r\n"
             b"x-tag: b\r\nContent-Length: 8\r\n\r\n{\"n\": 1}")
    gzipped = gzip.compress(b"unpacked")
    packed = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
              % len(gzipped)) + gzipped
    answers = iter([plain, plain, packed])
    srv, url = await serve(Server(lambda _: next(answers)))
    async with srv:
        target = httpx.URL(url + "/")
        full = await client.request("POST", target, content=b"x")
        short = await client.send_plain("POST", target, {}, b"x", answer=True)  # type: ignore[attr-defined]
        decoded = await client.send_plain("POST", target, {}, b"x", answer=True)  # type: ignore[attr-defined]
    assert short == Reply(full.status_code, dict(full.headers), full.content,
                          full.headers.get("content-type"))
    assert short.headers["x-tag"] == "a, b"
    assert isinstance(decoded, httpx.Response) and decoded.content == b"unpacked"


@pytest.mark.parametrize("raw", [
    [(b"Content-Type", b"text/plain"), (b"X-A", b"1"), (b"x-a", b"2")],
    [(b"X-Name", "Zoë".encode()), (b"X-B", b"plain")],
    [(b"X-Name", "Zoë".encode("latin-1"))],
])
def test_answer_headers_read_as_httpx_reads_them(raw: list[tuple[bytes, bytes]]) -> None:
    assert header_dict(raw) == dict(httpx.Headers(raw))


async def test_the_short_path_reads_cookies_and_leaves_sending_them_to_httpx(
        client: httpx.AsyncClient) -> None:
    server = Server(ok(b"set", b"Set-Cookie: session=abc; Path=/\r\n"))
    srv, url = await serve(server)
    async with srv:
        got = await client.send_plain("POST", httpx.URL(url + "/"), {}, b"x")  # type: ignore[attr-defined]
        assert isinstance(got, httpx.Response) and got.status_code == 200
        assert dict(client.cookies) == {"session": "abc"}
        # A cookie to send: httpx's full path sends it (the short path declines).
        assert await client.send_plain("POST", httpx.URL(url + "/"), {}, b"x") is None  # type: ignore[attr-defined]


async def test_credentials_in_the_url_leave_the_short_path_to_httpx(
        client: httpx.AsyncClient) -> None:
    """``https://user:pw@host/``: httpx sends them as Basic auth, so the short path (which
    writes only the host) declines and the full path carries them."""
    server = Server(ok(b"ok"))
    srv, url = await serve(server)
    target = httpx.URL(url.replace("://", "://erp:s3cret@") + "/")
    async with srv:
        assert await client.send_plain("POST", target, {}, b"x") is None  # type: ignore[attr-defined]
        assert (await client.request("POST", target, content=b"x")).status_code == 200
    assert b"authorization: basic " in server.requests[0].lower()


async def test_the_short_path_follows_changes_to_the_client_and_its_urls(
        client: httpx.AsyncClient) -> None:
    """What ``send_plain`` encodes once (the request line per URL, the client's own headers,
    its timeouts) is read again when it changes: each request still writes what the full
    path writes."""
    server = Server(ok(b"ok"))
    srv, url = await serve(server)
    first, second = httpx.URL(url + "/a"), httpx.URL(url + "/b?q=1")
    headers = {"Idempotency-Key": "k"}

    async def both(target: httpx.URL) -> None:
        assert (await client.request("POST", target, content=b"x", headers=headers)
                ).status_code == 200
        assert await client.send_plain("POST", target, headers, b"x") == 200  # type: ignore[attr-defined]
        assert server.requests[-1] == server.requests[-2]

    async with srv:
        await both(first)
        await both(second)
        await both(first)
        client.headers["User-Agent"] = "changed"
        client.headers["X-Extra"] = "1"
        await both(first)
        assert b"User-Agent: changed" in server.requests[-1]
        client.timeout = httpx.Timeout(0.5)
        assert client._timeouts[0] is not client._timeout  # type: ignore[attr-defined]
        await both(second)
        assert client._timeouts[1]["read"] == 0.5  # type: ignore[attr-defined]


async def test_an_exchange_leaves_no_garbage_for_the_cyclic_collector(
        client: httpx.AsyncClient) -> None:
    """Each delivery's answer is freed as soon as it is read: the parser and the answer it
    calls back once made a reference cycle, ~10 objects a delivery left for the cyclic GC
    (the daemon collects them at its own pace: esb.bus.runtime.collector)."""
    server = Server(ok(b"a"))
    srv, url = await serve(server)
    target = httpx.URL(f"{url}/in/x")
    headers = {"Content-Type": "application/json"}
    async with srv:
        await client.send_plain("POST", target, headers, b"{}")  # type: ignore[attr-defined]
        with CyclesLeft() as cycles:
            for _ in range(50):
                assert await client.send_plain(  # type: ignore[attr-defined]
                    "POST", target, headers, b"{}") == 200
    assert cycles.left == 0, f"{cycles.left} objects in reference cycles after 50 exchanges"


async def test_a_connection_reset_leaves_the_body_to_no_cycle(
        client: httpx.AsyncClient) -> None:
    """The stream reader keeps the reset's error, whose traceback held the frames that hold
    the reader and the request's body, so the body waited for the cyclic collector. The
    error's traceback is dropped now. (asyncio's own transports of an aborted connection
    still make cycles under the default loop; the daemon runs uvloop's.)"""
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    srv = await asyncio.start_server(reset, "127.0.0.1", 0)
    target = httpx.URL(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/in/x")
    headers = {"Content-Type": "application/json"}
    body = b"x" * 100_000

    async def one() -> None:
        with pytest.raises(httpx.TransportError):
            await client.send_plain("POST", target, headers, body)  # type: ignore[attr-defined]

    async with srv:
        await one()
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(20):
                await one()
            gc.collect()
            held = [type(o).__name__ for o in gc.garbage
                    if type(o).__name__ == "frame" or (isinstance(o, bytes) and len(o) >= 100_000)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert held == [], held
