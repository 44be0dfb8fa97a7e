"""Header count and size are bounded (431), and what the HTTP parser cannot read is a 400
problem+json; the daemon serves the next client as before."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.hostile import ROUTES, raw_request, read_all

from esb.bus.runtime.httpguard import LINGER

KiB = 1024


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return module_daemons({"sources": {"shop": {"adapter": "rest", "path": "/in/shop",
                                                "keep_headers": ["x-big"]}},
                           "destinations": {"out": {"adapter": "rest",
                                                    "url": module_sink.url + "/in"}}},
                          ROUTES).start()


def request_with(headers: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (f"POST /in/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{lines}"
            "Content-Length: 2\r\n\r\n{}").encode()


def test_one_huge_header_is_431(daemon: DaemonProcess) -> None:
    status, body = raw_request(daemon, request_with([("X-Big", "a" * 64 * KiB)]))
    assert status == 431 and "bytes" in body["detail"]


def test_sixteen_big_headers_are_431(daemon: DaemonProcess) -> None:
    status, _ = raw_request(daemon, request_with([(f"X-Big{i}", "a" * 4 * KiB)
                                                  for i in range(16)]))
    assert status == 431


def test_too_many_headers_are_431(daemon: DaemonProcess) -> None:
    status, body = raw_request(daemon, request_with([(f"X-H{i}", "1") for i in range(150)]))
    assert status == 431 and "100 header fields" in body["detail"]


def test_a_huge_request_line_is_431(daemon: DaemonProcess) -> None:
    status, _ = raw_request(daemon, b"GET /" + b"a" * 64 * KiB + b" HTTP/1.1\r\n\r\n")
    assert status == 431


@pytest.mark.parametrize("garbage", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBad\r\n\r\n",
                                     b"POST /in/shop HTTP/1.1\r\nContent-Length: x\r\n\r\n"])
def test_what_the_parser_cannot_read_is_a_400_problem(daemon: DaemonProcess,
                                                      garbage: bytes) -> None:
    status, body = raw_request(daemon, garbage)
    assert status == 400 and body["title"] == "Bad request"


def test_headers_within_the_limits_are_served(daemon: DaemonProcess) -> None:
    r = httpx.post(daemon.url + "/in/shop", json={"a": 1},
                   headers={"X-Big": "b" * 8 * KiB}, timeout=10)
    assert r.status_code == 202, r.text


def test_pipelined_requests_past_the_limit_in_one_read_are_served(daemon: DaemonProcess
                                                                   ) -> None:
    """Small requests pipelined, 40 KiB in one read that ends inside the next head: each is
    served (the whole read used to be counted as that head's: 431); a huge head after a
    request in the same read is still 431 (refused at once: the first answer may not come)."""
    one = request_with([])
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(one * (40 * KiB // len(one)) + one[:20])
        time.sleep(0.3)
        s.sendall(one[20:].replace(b"Host: x", b"Host: x\r\nConnection: close"))
        answers = read_all(s)
    assert re.findall(rb"HTTP/1.1 (\d{3})", answers) == [b"202"] * (40 * KiB // len(one) + 1)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        with contextlib.suppress(OSError):  # refused mid-send
            s.sendall(one + request_with([("X-Big", "a" * 64 * KiB)]))
        answers = read_all(s)
    assert re.findall(rb"HTTP/1.1 (\d{3})", answers)[-1:] == [b"431"]


def test_a_refused_client_still_sending_reads_its_answer_and_a_clean_end(
        daemon: DaemonProcess) -> None:
    """The 431 goes out at once; what the client sends after it is read and dropped (a
    lingering close) instead of making the server's socket reset the connection, so the
    client reads the answer and then end of stream; a client that never closes is closed
    after the linger time."""
    big_head = b"POST /in/shop HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * KiB + b"\r\n"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(big_head)
        time.sleep(0.3)  # answered by now; a plain close would have closed the socket
        for _ in range(20):  # the client goes on with its headers
            s.sendall(b"X-More: " + b"m" * KiB + b"\r\n")
        assert read_all(s).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(big_head)
        assert read_all(s).startswith(b"HTTP/1.1 431")  # end of stream at once: half-closed
        for n in range(3):  # still read (and dropped): a closed socket would reset, and the
            s.sendall(b"X-Late: %d\r\n" % n)  # send after a reset fails
            time.sleep(0.2)
        time.sleep(LINGER + 1)
        with pytest.raises(OSError):  # closed by the server by now: a send draws a reset
            for _ in range(5):
                s.sendall(b"X-Later: 1\r\n")
                time.sleep(0.2)
    assert httpx.post(daemon.url + "/in/shop", json={"ok": 1}, timeout=5).status_code == 202
