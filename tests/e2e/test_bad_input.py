"""Every kind of bad input gets its own clear error, and the daemon keeps serving."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from esbtest.daemon import DaemonProcess
from esbtest.proxy import TcpProxy
from esbtest.waiting import settled, wait_until
from prometheus_client.parser import text_string_to_metric_families

ROUTES = {"r.yaml": {"routes": [{"name": "all", "match": {}, "to": ["out"]}]}}


def config(bus: dict[str, Any], sink_url: str) -> dict[str, Any]:
    return {
        "bus": bus,
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop", "max_body": "4KiB"}},
        "destinations": {"out": {"adapter": "rest", "url": sink_url + "/in"}},
    }


# The refused-request tests share one daemon (nothing they send gets through), and so do the
# two that look at their own keys' deliveries; the tests that stop the daemon get their own.
@pytest.fixture(scope="module")
def shared(module_sink: Any, module_daemon_factory: Any) -> DaemonProcess:
    return module_daemon_factory(config({"url": "embedded"}, module_sink.url), ROUTES).start()


@pytest.fixture
def daemon(sink: Any, daemon_factory: Any) -> DaemonProcess:
    return daemon_factory(config({"url": "embedded"}, sink.url), ROUTES).start()


def post(d: DaemonProcess, body: bytes, ctype: str | None, path: str = "/in/shop",
         **headers: str) -> httpx.Response:
    h = dict(headers)
    if ctype:
        h["Content-Type"] = ctype
    return httpx.post(d.url + path, content=body, headers=h, timeout=10)


def assert_problem(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"]
    text = (body.get("detail") or "") + body["title"]
    for w in words:
        assert w.lower() in text.lower(), text


BAD = [
    ("malformed JSON", b'{"a": ', "application/json", 400, ["json"]),
    ("JSON with trailing garbage", b'{"a": 1} x', "application/json", 400, ["json"]),
    ("malformed XML", b"<order><id>1</order>", "application/xml", 400, ["xml"]),
    ("XML external entity", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM '
     b'"file:///etc/passwd">]><r>&x;</r>', "application/xml", 400, ["doctype"]),
    ("billion laughs", b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b '
     b'"&a;&a;&a;&a;">]><l>&b;</l>', "text/xml", 400, ["doctype"]),
    ("wrong content type", b"\x00\x01", "application/octet-stream", 415, ["content type"]),
    ("no content type", b"hello", None, 415, ["content type"]),
    ("not UTF-8 text", b"\xff\xfe\xfa", "text/plain", 400, ["utf-8"]),
    ("structured CloudEvent missing type", orjson.dumps(
        {"specversion": "1.0", "id": "1", "source": "x"}), "application/cloudevents+json",
     400, ["type"]),
    ("structured CloudEvent wrong specversion", orjson.dumps(
        {"specversion": "0.3", "id": "1", "source": "x", "type": "t"}),
     "application/cloudevents+json", 400, ["specversion"]),
]


@pytest.mark.parametrize(("what", "body", "ctype", "status", "words"), BAD,
                         ids=[b[0] for b in BAD])
def test_bad_body_is_refused_clearly(shared: DaemonProcess, what: str, body: bytes,
                                     ctype: str | None, status: int, words: list[str]) -> None:
    assert_problem(post(shared, body, ctype), status, *words)


def test_binary_mode_cloudevent_needs_its_attributes(shared: DaemonProcess) -> None:
    r = post(shared, b"{}", "application/json", **{"ce-specversion": "1.0", "ce-id": "1"})
    assert_problem(r, 400, "ce-source", "ce-type")


def test_oversize_body_is_413_declared_or_streamed(shared: DaemonProcess) -> None:
    big = b'{"x": "' + b"a" * 10_000 + b'"}'
    assert_problem(post(shared, big, "application/json"), 413, "4096")

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b"a" * 1000

    r = httpx.post(shared.url + "/in/shop", content=chunks(),
                   headers={"Content-Type": "text/plain"}, timeout=10)
    assert_problem(r, 413)


def test_unknown_path_and_method(shared: DaemonProcess) -> None:
    assert_problem(post(shared, b"{}", "application/json", path="/in/nope"), 404, "/in/nope")
    r = httpx.get(shared.url + "/in/shop", timeout=10)
    assert_problem(r, 405, "GET")


def test_admin_needs_its_token(shared: DaemonProcess) -> None:
    r = httpx.get(shared.url + "/admin/status", timeout=10)
    assert_problem(r, 401, "bearer")
    r = httpx.get(shared.url + "/admin/status", timeout=10,
                  headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert shared.admin("GET", "/admin/status").status_code == 200


def test_daemon_keeps_serving_after_bad_input(shared: DaemonProcess, module_sink: Any) -> None:
    before = len(module_sink.requests)
    for _, body, ctype, _, _ in BAD:
        post(shared, body, ctype)
    r = post(shared, b'{"ok": true}', "application/json", **{"Idempotency-Key": "good-1"})
    assert r.status_code == 202
    wait_until(lambda: "good-1" in module_sink.unique(), "the good request delivered",
               daemon=shared)
    wait_until(lambda: settled(shared), "nothing left to deliver", daemon=shared)
    # nothing from the bad requests got through
    assert [rec.key for rec, _ in module_sink.requests[before:]] == ["good-1"]


def test_idempotency_key_dedups_and_replays_the_answer(shared: DaemonProcess,
                                                       module_sink: Any) -> None:
    first = post(shared, b'{"n": 1}', "application/json", **{"Idempotency-Key": "dup"})
    again = post(shared, b'{"n": 1}', "application/json", **{"Idempotency-Key": "dup"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    wait_until(lambda: "dup" in module_sink.unique(), "the message delivered", daemon=shared)
    wait_until(lambda: settled(shared), "nothing left to deliver", daemon=shared)
    assert module_sink.keys()["dup"] == 1


def log_lines(d: DaemonProcess) -> list[dict[str, Any]]:
    """Every line of the daemon's log (stdout and stderr), each of which must be one JSON
    object."""
    out = []
    for n, line in enumerate(d.log_path.read_text().splitlines(), 1):
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise AssertionError(f"log line {n} is not JSON: {line!r}") from None
    return out


def test_malformed_http_is_refused_and_logged_as_json(daemon: DaemonProcess) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\xa5 not HTTP at all\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert post(daemon, b'{"ok": true}', "application/json").status_code == 202
    assert daemon.stop() == 0
    lines = log_lines(daemon)
    assert {"logger": "uvicorn.error", "level": "warning",
            "event": "Invalid HTTP request received."}.items() <= next(
        line for line in lines if line.get("logger") == "uvicorn.error").items()
    assert any(line["event"] == "esb running" for line in lines)


def scrape(d: DaemonProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{d.url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def bus_connected(d: DaemonProcess) -> float:
    return scrape(d)[("esb_bus_connected", ())]


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_bus_down_answers_503_and_recovers(rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    from urllib.parse import urlsplit

    u = urlsplit(rabbit.url)
    proxy = TcpProxy(u.hostname or "127.0.0.1", u.port or 5672)
    try:
        url = f"amqp://{u.username}:{u.password}@127.0.0.1:{proxy.port}{u.path or '/'}"
        d = daemon_factory(config({"url": url, "prefix": rabbit.prefix}, sink.url), ROUTES)
        rabbit.destinations.add("out")
        d.start()
        assert bus_connected(d) == 1
        assert post(d, b'{"n": 0}', "application/json",
                    **{"Idempotency-Key": "before"}).status_code == 202

        proxy.stop_accepting()  # the broker is down: reconnects are refused...
        proxy.cut()  # ...and the live connection drops
        refused: list[str] = []
        accepted = {"before"}
        r = None
        for i in range(100):  # until the daemon noticed (the first ones may still get in)
            key = f"down-{i}"
            r = post(d, b'{"n": 1}', "application/json", **{"Idempotency-Key": key})
            if r.status_code == 503:
                refused.append(key)
                break
            assert r.status_code == 202, r.text
            accepted.add(key)
            time.sleep(0.1)
        assert r is not None
        assert_problem(r, 503, "bus")
        assert r.headers.get("retry-after")
        assert httpx.get(d.url + "/readyz", timeout=5).status_code == 503
        assert httpx.get(d.url + "/healthz", timeout=5).status_code == 200
        assert eventually(lambda: bus_connected(d) == 0, 10), scrape(d)

        proxy.start_accepting()  # the broker is back, on the same address
        assert eventually(lambda: httpx.get(d.url + "/readyz", timeout=5).status_code == 200,
                          60), d.log()
        assert bus_connected(d) == 1
        r = post(d, b'{"n": 2}', "application/json", **{"Idempotency-Key": "after"})
        assert r.status_code == 202, r.text
        accepted.add("after")
        assert eventually(lambda: sink.unique() >= accepted, 30), (sink.unique(), d.log())
        assert eventually(lambda: settled(d), 30), d.log()  # nothing more on its way
        assert sink.unique() == accepted, refused  # the refused request was never half-taken
        assert d.stop() == 0
    finally:
        proxy.close()
    # kombu's and pika's records about the lost connection are JSON lines too
    assert log_lines(d)


def test_bad_config_lists_every_problem_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text(
        "bus: {url: 'kafka://nope'}\n"
        "http:\n"
        "  listen: 'not-a-port'\n"
        "sources:\n"
        "  shop: {adapter: rest}\n"
        "  legacy: {adapter: ftp, path: /x}\n"
        "destinations:\n"
        "  out: {adapter: rest, url: 'http://x', methd: POST}\n"
        "unknown_key: 1\n")
    r = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "run"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    err = r.stderr
    assert "config/esb.yaml:1: bus.url" in err
    assert "config/esb.yaml:3: http.listen" in err
    assert "config/esb.yaml:9: unknown_key: unknown key" in err
    # adapter-level problems are listed in the same run
    assert "config/esb.yaml:5: sources.shop.path: Field required" in err
    assert "config/esb.yaml:6: sources.legacy.adapter: unknown adapter 'ftp'" in err
    assert "config/esb.yaml:8: destinations.out.methd: unknown key" in err
    (tmp_path / "config" / "esb.yaml").write_text(
        "sources:\n"
        "  legacy: {adapter: rset, path: /x}\n")
    r = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "run"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "config/esb.yaml:2: sources.legacy.adapter: unknown adapter 'rset'. " \
           "Did you mean 'rest'?" in r.stderr
