"""TLS beyond SSL_CERT_FILE: the bus over amqps:// with a private CA, a client certificate and
a server name (``bus.tls``), outbound HTTPS with a private CA and a client certificate, and an
outbound proxy (``http.outbound``). The broker is the shared RabbitMQ behind a TLS front that
requires client certificates; the HTTPS destination requires one too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from esbtest.certs import Pki, make_pki
from esbtest.logs import log_events
from esbtest.tlsproxy import TlsFront
from esbtest.waiting import wait_until

ROUTES = {"r.yaml": {"routes": [{"name": "all", "to": ["out"]}]}}


class Recorder(ThreadingHTTPServer):
    """An HTTP server answering 200 to every POST and keeping each request line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.lines.append(self.requestline)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "d" / "pki")  # inside the daemon's folder: relative paths


@pytest.fixture
def https_destination(pki: Pki) -> Iterator[Recorder]:
    server = Recorder()
    server.socket = pki.server_context(require_client=True).wrap_socket(
        server.socket, server_side=True)
    yield server
    server.shutdown()


@pytest.mark.rabbitmq
def test_bus_and_outbound_https_with_a_private_ca_and_client_certificates(
        rabbit: Any, pki: Pki, https_destination: Recorder, daemon_factory: Any) -> None:
    u = urlsplit(rabbit.url)
    front = TlsFront(pki.server_context(require_client=True), (u.hostname or "127.0.0.1",
                                                                 u.port or 5672))
    try:
        client = {"ca_file": "pki/ca.pem", "cert_file": "pki/client.pem",
                  "key_file": "pki/client.key"}
        d = daemon_factory({
            "bus": {"url": f"amqps://{u.username}:{u.password}@127.0.0.1:{front.port}"
                           f"{u.path or '/'}", "prefix": rabbit.prefix,
                    "tls": {**client, "server_name": pki.server_name}},
            "http": {"outbound": client},
            "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
            "destinations": {"out": {"adapter": "rest",
                                     "url": f"https://127.0.0.1:{https_destination.port}/x"}},
        }, ROUTES)
        rabbit.destinations.add("out")
        d.start()
        status = d.admin("GET", "/admin/status").json()
        assert status["bus"] == {"kind": "rabbitmq", "durable": True, "connected": True}
        r = httpx.post(f"{d.url}/in/shop/order", json={"n": 1})
        assert r.status_code == 202, r.text
        wait_until(lambda: https_destination.lines, "the HTTPS delivery", daemon=d)
        assert https_destination.lines[0].startswith("POST /x ")
        assert not front.handshake_errors
    finally:
        front.close()


@pytest.mark.rabbitmq
def test_a_bus_that_wants_a_client_certificate_says_why_it_refused(
        rabbit: Any, pki: Pki, daemon_factory: Any) -> None:
    u = urlsplit(rabbit.url)
    front = TlsFront(pki.server_context(require_client=True), (u.hostname or "127.0.0.1",
                                                                 u.port or 5672))
    try:
        d = daemon_factory({
            "bus": {"url": f"amqps://{u.username}:{u.password}@127.0.0.1:{front.port}/",
                    "prefix": rabbit.prefix, "tls": {"ca_file": "pki/ca.pem"}},
        }, {"r.yaml": {"routes": []}})
        d.start(wait=False)

        def refused() -> list[dict[str, Any]]:
            return log_events(d, "bus not reachable yet; retrying until it is")

        lines = wait_until(refused, "the refused connection logged", daemon=d)
        assert "cannot connect to the bus at 127.0.0.1" in lines[0]["error"]
        assert not lines[0]["error"].rstrip().endswith(":")  # a reason, never empty
        wait_until(lambda: front.handshake_errors, "the front's refusal")
    finally:
        front.close()


def test_outbound_calls_go_through_the_proxy(tmp_path: Path, daemon_factory: Any) -> None:
    proxy = Recorder()  # answers for the destination it was asked for
    try:
        d = daemon_factory({
            "http": {"outbound": {"proxy": f"http://127.0.0.1:{proxy.port}"}},
            "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
            "destinations": {"out": {"adapter": "rest",
                                     "url": "http://erp.internal.example:8081/orders"}},
        }, ROUTES).start()
        assert httpx.post(f"{d.url}/in/shop/order", json={"n": 1}).status_code == 202
        wait_until(lambda: proxy.lines, "the call through the proxy", daemon=d)
        assert proxy.lines[0].startswith("POST http://erp.internal.example:8081/orders ")
    finally:
        proxy.shutdown()


def test_missing_tls_files_and_a_plain_url_are_config_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    def run() -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "run"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        return r

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text(
        "bus:\n  url: amqp://guest:guest@127.0.0.1:5672/\n  tls: {ca_file: nowhere/ca.pem}\n"
        "http:\n  outbound: {cert_file: nowhere/client.pem, proxy: socks5://x:1}\n")
    r = run()
    assert "config/esb.yaml:5: http.outbound.proxy: Value error, proxy must be an http://" \
        in r.stderr
    (tmp_path / "config" / "esb.yaml").write_text(
        "bus:\n  url: amqp://guest:guest@127.0.0.1:5672/\n  tls: {ca_file: nowhere/ca.pem}\n"
        "http:\n  outbound: {cert_file: nowhere/client.pem}\n")
    r = run()
    assert f"http.outbound.cert_file: {tmp_path}/nowhere/client.pem does not exist" in r.stderr
    assert f"bus.tls.ca_file: {tmp_path}/nowhere/ca.pem does not exist" in r.stderr
    assert "the bus URL must be amqps://" in r.stderr
