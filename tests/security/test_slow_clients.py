"""Slow clients: a request's headers and body must arrive in time, idle connections are closed,
and the connection count is capped, while other clients are served throughout."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.hostile import ROUTES, raw_problem, read_all

# Short limits, so each test waits little for them. The header timeout stays at 1 s: the
# connection-cap test must open 45 silent connections before the first ones time out.
LIMITS = {"header_timeout": "1s", "body_timeout": "1s", "idle_timeout": "1s",
          "max_connections": 40}


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return module_daemons({"http": dict(LIMITS),
                           "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
                           "destinations": {"out": {"adapter": "rest",
                                                    "url": module_sink.url + "/in"}}},
                          ROUTES).start()


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


def test_connections_past_the_cap_get_503_and_others_are_served_again(
        daemon: DaemonProcess) -> None:
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
