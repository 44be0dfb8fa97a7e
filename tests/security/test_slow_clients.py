"""Slow clients: a request's headers and body must arrive in time, idle connections are closed,
and the connection count is capped, while other clients are served throughout."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.hostile import ROUTES, raw_problem, raw_request, read_all
from esbtest.waiting import wait_until

# Short limits, so each test waits little for them.
LIMITS = {"header_timeout": "1s", "body_timeout": "1s", "idle_timeout": "1s",
          "max_connections": 40}


def start(module_daemons: Callable[..., DaemonProcess], sink: Any, name: str = "d",
          **limits: str) -> DaemonProcess:
    return module_daemons({"http": {**LIMITS, **limits},
                           "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
                           "destinations": {"out": {"adapter": "rest", "url": sink.url + "/in"}}},
                          ROUTES, name=name).start()


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return start(module_daemons, module_sink)


@pytest.fixture(scope="module")
def patient(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    """The same limits but a long header timeout: the connection-cap test's silent
    connections must all be open at once, however slowly a loaded machine opens them (with
    1 s, the first ones could time out before the last ones came)."""
    return start(module_daemons, module_sink, "patient", header_timeout="30s")


def connect(d: DaemonProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    return s


def served(d: DaemonProcess) -> bool:
    r = httpx.post(d.url + "/in/shop", json={"ok": 1}, timeout=5)
    return r.status_code == 202


def test_headers_that_do_not_arrive_in_time_get_408(daemon: DaemonProcess) -> None:
    s = connect(daemon)
    started = time.monotonic()
    s.sendall(b"POST /in/shop HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
    status, body = raw_problem(read_all(s))
    assert status == 408 and "headers" in body["detail"]
    assert time.monotonic() - started < 8


def test_a_body_that_trickles_gets_408(daemon: DaemonProcess) -> None:
    s = connect(daemon)
    started = time.monotonic()
    s.sendall(b"POST /in/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n{")
    for _ in range(3):  # a byte every 0.4 s: each within any per-read timeout, 1.2 s in all
        time.sleep(0.4)
        try:
            s.sendall(b" ")
        except OSError:
            break
    status, body = raw_problem(read_all(s))
    assert status == 408 and "body" in body["detail"]
    assert time.monotonic() - started < 10


def test_a_connection_that_sends_nothing_is_closed(daemon: DaemonProcess) -> None:
    s = connect(daemon)
    assert read_all(s) == b""  # closed, silently


def test_an_idle_kept_alive_connection_is_closed(daemon: DaemonProcess) -> None:
    s = connect(daemon)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    raw = read_all(s)  # returns once the server closes the connection
    assert raw.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 8


def test_each_request_on_a_kept_alive_connection_gets_its_own_header_time(
        daemon: DaemonProcess) -> None:
    """The limits run from each phase's start, not from the connection's: a request begun
    0.6 s after the opening is not cut off at the opening's 1 s, and the next request's head
    gets its full second after its first byte (the connection's one timer moves on)."""
    s = connect(daemon)
    s.settimeout(10)
    time.sleep(0.6)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head begun, not ended
    time.sleep(0.6)  # 1.2 s after the opening, 0.6 s into this head
    s.sendall(b"\r\n")
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first
    time.sleep(0.5)  # idle, within its limit
    started = time.monotonic()
    s.sendall(b"POST /in/shop HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
    status, body = raw_problem(read_all(s))
    waited = time.monotonic() - started
    assert status == 408 and "headers" in body["detail"]
    assert 0.9 <= waited < 8


def trickled(s: socket.socket, first: bytes, drip: bytes, within: float = 6.0) -> bytes:
    """Send ``first``, then ``drip`` every 0.3 s (each byte well inside any per-read limit);
    what the server sent until it closed. Fails if it is still open after ``within`` s."""
    s.settimeout(0.3)
    started, got = time.monotonic(), b""
    s.sendall(first)
    while time.monotonic() - started < within:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            chunk = None
        except ConnectionResetError:
            return got
        if chunk == b"":
            return got
        got += chunk or b""
        with contextlib.suppress(OSError):
            s.sendall(drip)
    raise AssertionError(f"still open after {within} s; got {got[:200]!r}")


def test_a_head_trickled_behind_an_answered_request_gets_408(daemon: DaemonProcess) -> None:
    """The answer to the first request does not end the limit of the second's head, begun
    in the same read (the connection is not idle)."""
    got = trickled(connect(daemon), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"POST /in/shop HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n")
    first, _, rest = got.partition(b"HTTP/1.1 408")
    assert first.startswith(b"HTTP/1.1 200") and rest, got[:300]


def test_a_body_trickled_after_an_early_answer_is_cut_off(daemon: DaemonProcess) -> None:
    """A request answered before its body was read (no such path) keeps its body limit:
    the body cannot trickle on for ever after the answer."""
    got = trickled(connect(daemon), b"POST /nowhere HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", b" ")
    assert got.startswith(b"HTTP/1.1 404"), got[:300]


def test_connections_past_the_cap_get_503_and_others_are_served_again(
        patient: DaemonProcess) -> None:
    daemon = patient
    held = [connect(daemon) for _ in range(35)]
    try:
        assert served(daemon)  # below the cap: served while slow clients wait
        more = [connect(daemon) for _ in range(10)]
        refused = 0
        for s in more:
            s.settimeout(0.5)
            try:
                raw = s.recv(65536)
            except TimeoutError:
                continue
            if raw:
                status, body = raw_problem(raw)
                assert status == 503 and "connections" in body["title"].lower()
                refused += 1
        assert refused >= 4
        held += more
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while not served(daemon):  # the closed ones are let go of at once
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_slow_clients_are_all_let_go_of(daemon: DaemonProcess) -> None:
    slow = [connect(daemon) for _ in range(30)]
    for s in slow:
        s.sendall(b"POST /in/shop HTTP/1.1\r\n")
    deadline = time.monotonic() + 15
    for s in slow:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        raw = read_all(s, timeout=max(0.1, deadline - time.monotonic()))
        assert raw.startswith(b"HTTP/1.1 408")
        s.close()
    assert served(daemon)


def test_an_upgrade_request_is_served_as_http_with_its_body(daemon: DaemonProcess,
                                                            module_sink: Any) -> None:
    """An Upgrade esb does not take (h2c, as Java's HTTP clients send by default; WebSocket)
    is ignored and the request served as HTTP/1.1 with its whole body, by Content-Length or
    chunked, split across reads, then a pipelined request on the same connection."""
    head = (b"POST /in/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")
    sized = head + b'Content-Length: 12\r\n\r\n{"up": "cl"}'
    chunked = head + (b"Transfer-Encoding: chunked\r\n\r\n"
                      b'5\r\n{"up"\r\na\r\n: "chunk"}\r\n0\r\n\r\n')
    plain = (b"POST /in/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b'Connection: close\r\nContent-Length: 14\r\n\r\n{"up": "next"}')
    with connect(daemon) as s:
        s.sendall(sized[:-5])
        time.sleep(0.05)  # the rest of the body in a later read
        s.sendall(sized[-5:] + chunked + plain)
        answers = read_all(s)
    assert re.findall(rb"HTTP/1.1 (\d{3})", answers) == [b"202"] * 3, answers

    def delivered() -> set[str]:
        return {orjson.loads(r.body).get("up") for r in module_sink.received} - {None}

    wait_until(lambda: delivered() == {"cl", "chunk", "next"}, "the three bodies delivered",
               daemon=daemon)
    r = httpx.post(daemon.url + "/in/shop", json={"up": "ws"}, timeout=5,
                   headers={"Connection": "Upgrade", "Upgrade": "websocket",
                            "Sec-WebSocket-Version": "13",
                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status_code == 202, r.text
    wait_until(lambda: "ws" in delivered(), "the WebSocket-upgrade body delivered",
               daemon=daemon)
    assert "WebSocket library" not in daemon.log(200_000)


UPGRADE = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")


def upgrade_post(body: bytes, *, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return (b"POST /in/shop HTTP/" + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
            + UPGRADE + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def statuses(raw: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1.1 (\d{3})", raw)


def ups(sink: Any) -> set[str]:
    return {orjson.loads(r.body).get("up") for r in sink.received} - {None}


def test_a_read_of_many_upgrade_requests_is_served_whole(daemon: DaemonProcess) -> None:
    """Thousands of upgrade requests in one read are each answered: the re-reading after each
    does not nest (it overflowed Python's stack: no answer, a traceback a thousand frames
    long in the log)."""
    n = 2000
    one = b"GET /in/shop HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
    with connect(daemon) as s:
        s.sendall(one * n + one.replace(b"upgrade", b"close"))
        answers = read_all(s, timeout=30)
    assert statuses(answers) == [b"405"] * (n + 1), answers[-300:]
    assert "RecursionError" not in daemon.log(400_000)


def test_a_connect_is_answered_and_nothing_after_it_is_read(daemon: DaemonProcess,
                                                            module_sink: Any) -> None:
    """esb tunnels nothing: a CONNECT gets its answer and the connection closes. (httptools
    stops after a CONNECT's head: the bytes after it in the same read were dropped, those of a
    later read parsed as requests — what was served depended on how the bytes were split.)"""
    connect_head = b"CONNECT /in/shop HTTP/1.1\r\nHost: x\r\n\r\n"
    after = upgrade_post(b'{"up": "after-connect"}').replace(UPGRADE, b"")
    for pause in (0, 0.2):  # the request after it in the same read, or in a later one
        with connect(daemon) as s:
            s.sendall(connect_head)
            time.sleep(pause)
            with contextlib.suppress(OSError):  # closed already
                s.sendall(after)
            answer = read_all(s)
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert statuses(answer) == [b"405"] and b"connection: close" in head, answer
    assert served(daemon)
    with connect(daemon) as s:  # a marker sent after: delivered, the others never were
        s.sendall(upgrade_post(b'{"up": "marker"}', extra=b"Connection: close\r\n"))
        assert statuses(read_all(s)) == [b"202"]
    wait_until(lambda: "marker" in ups(module_sink), "the marker delivered", daemon=daemon)
    assert "after-connect" not in ups(module_sink)


def test_an_upgrade_request_keeps_http_framing_and_limits(daemon: DaemonProcess,
                                                          module_sink: Any) -> None:
    """The re-read request is held to what any request is: a Content-Length beside chunked
    is 400, too many header fields 431, a body that trickles 408; Expect: 100-continue is
    answered; HTTP/1.0 is served and closed; a body cut short delivers nothing."""
    te_and_cl = upgrade_post(b'{"up": "te-cl"}', extra=b"Transfer-Encoding: chunked\r\n")
    status, _ = raw_request(daemon, te_and_cl)
    assert status == 400
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(120))
    status, _ = raw_request(daemon, upgrade_post(b'{"up": "many"}', extra=many))
    assert status == 431

    with connect(daemon) as s:  # 100-continue: the body only once the server asks for it
        body = b'{"up": "continue"}'
        s.sendall(upgrade_post(body, extra=b"Expect: 100-continue\r\nConnection: close\r\n")
                  .removesuffix(body))
        assert s.recv(100).startswith(b"HTTP/1.1 100 ")
        s.sendall(body)
        assert statuses(read_all(s)) == [b"202"]

    with connect(daemon) as s:  # HTTP/1.0: served, then the connection ends
        s.sendall(upgrade_post(b'{"up": "1.0"}', version=b"1.0") + upgrade_post(b'{"up": "x"}'))
        assert statuses(read_all(s)) == [b"202"]

    with connect(daemon) as s:  # half a body, then gone
        s.sendall(upgrade_post(b'{"up": "cut short"}')[:-5])
        time.sleep(0.1)
    started = time.monotonic()
    with connect(daemon) as s:  # a body that trickles: the body timeout holds
        s.sendall(upgrade_post(b'{"up": "slow"}' + b" " * 50)[:-50])
        status, body = raw_problem(read_all(s))
    assert status == 408 and "body" in body["detail"]
    assert time.monotonic() - started < 8

    wait_until(lambda: {"continue", "1.0"} <= ups(module_sink), "the two bodies delivered",
               daemon=daemon)
    assert not ups(module_sink) & {"te-cl", "many", "x", "cut short", "slow"}
    assert served(daemon)
