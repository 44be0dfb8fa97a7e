"""Secrets from ${ENV} never show up: not in logs, problem bodies, traces, DLQ or status.

The leak is provoked: the destinations echo the credentials they were sent (the bearer token,
the API key, the basic-auth header and the password inside it) in their 400 and 503 bodies,
which the rest adapter quotes in its delivery error; clients send wrong and right credentials
to an API-key source, a basic-auth source and a GitHub-signed webhook source. Every place an
operator or a client can read is then searched for every secret value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from test_delivery_faults import cli

ADMIN = "adm1n-t0ken-0123456789"
TOKEN = "s3cr3t-bearer-0123456789"
API_KEY = "0utb0und-api-key-24680"
BASIC_PW = "b4sic-passw0rd-13579"
INBOUND_KEY = "inb0und-key-987654"
INBOUND_PW = "inb0und-basic-pw-1122"
HOOK_SECRET = "gh-h00k-secret-3344"
#: What the daemon is given; every value must stay invisible.
ENV = {"ESB_TEST_ADMIN": ADMIN, "ESB_TEST_TOKEN": TOKEN, "ESB_TEST_API_KEY": API_KEY,
       "ESB_TEST_BASIC_PW": BASIC_PW, "ESB_TEST_INBOUND_KEY": INBOUND_KEY,
       "ESB_TEST_INBOUND_PW": INBOUND_PW, "ESB_TEST_HOOK_SECRET": HOOK_SECRET}
BASIC_HEADER = base64.b64encode(f"esb:{BASIC_PW}".encode()).decode()
SECRETS = (*ENV.values(), BASIC_HEADER)
#: Destination path → the status it answers (400: dead-lettered at once; 503: retried).
STATUS = {"/bearer": 400, "/apikey": 503, "/basic": 400}


class Echo:
    """A destination that refuses every request and quotes its credentials back (a common
    habit of debugging endpoints and misconfigured gateways)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with echo.lock:
                    echo.calls[self.path] = echo.calls.get(self.path, 0) + 1
                body = echo.body(dict(self.headers.items())).encode()
                self.send_response(STATUS.get(self.path, 404))
                self.send_header("Content-Type", "application/json")
                if self.path == "/apikey":
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def body(headers: dict[str, str]) -> str:
        got = {k.lower(): v for k, v in headers.items()}
        auth = got.get("authorization", "")
        decoded = ""
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth[6:]).decode()
        return json.dumps({"error": "denied", "authorization": auth,
                           "x-api-key": got.get("x-api-key", ""), "decoded": decoded})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


def config(bus: dict[str, Any], echo_url: str) -> dict[str, Any]:
    quick = {"max_attempts": 2, "backoff": {"initial": "200ms", "max": "200ms"}}
    return {
        "bus": bus,
        "admin": {"token": "${ESB_TEST_ADMIN}"},
        "logging": {"level": "debug", "format": "json"},
        "sources": {
            "shop": {"adapter": "rest", "path": "/in/shop",
                     "auth": {"type": "api_key", "header": "X-API-Key",
                              "keys": ["${ESB_TEST_INBOUND_KEY}"]}},
            "erp": {"adapter": "rest", "path": "/in/erp",
                    "auth": {"type": "basic", "users": {"erp": "${ESB_TEST_INBOUND_PW}"}}},
            "hook": {"adapter": "webhook", "path": "/in/hook", "scheme": "github",
                     "secrets": ["${ESB_TEST_HOOK_SECRET}"]},
        },
        "destinations": {
            "bearer": {"adapter": "rest", "url": echo_url + "/bearer",
                       "auth": {"type": "bearer", "token": "${ESB_TEST_TOKEN}"}},
            "apikey": {"adapter": "rest", "url": echo_url + "/apikey", "delivery": quick,
                       "auth": {"type": "api_key", "header": "X-API-Key",
                                "value": "${ESB_TEST_API_KEY}"}},
            "basic": {"adapter": "rest", "url": echo_url + "/basic",
                      "auth": {"type": "basic", "username": "esb",
                               "password": "${ESB_TEST_BASIC_PW}"}},
        },
    }


ROUTES = {"r.yaml": {"routes": [
    {"name": "shop", "from": ["shop"], "to": ["bearer"]},
    {"name": "erp", "from": ["erp"], "to": ["basic"]},
    {"name": "hook", "from": ["hook"], "to": ["apikey"]},
]}}


def github(body: bytes, secret: str, delivery: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}


def client_calls(url: str) -> tuple[list[str], list[str]]:
    """Wrong and right credentials at each source: (every answer's text, accepted ids)."""
    basic_ok = base64.b64encode(f"erp:{INBOUND_PW}".encode()).decode()
    basic_bad = base64.b64encode(b"erp:wrong-pw-0000").decode()
    hook_body = json.dumps({"action": "opened", "n": 3}).encode()
    calls = [
        ("/in/shop/x", {"X-API-Key": "wrong-key-1"}, b"{}", 401),
        ("/in/shop/x", {"X-API-Key": INBOUND_KEY, "Content-Type": "application/pdf"}, b"%",
         415),
        ("/in/shop/x", {"X-API-Key": INBOUND_KEY, "Idempotency-Key": "s-1"}, b'{"n": 1}', 202),
        ("/in/erp/x", {"Authorization": f"Basic {basic_bad}"}, b"{}", 401),
        ("/in/erp/x", {"Authorization": f"Basic {basic_ok}"}, b'{"n": 2}', 202),
        ("/in/hook", github(hook_body, "not-the-secret", "d-1"), hook_body, 401),
        ("/in/hook", github(hook_body, HOOK_SECRET, "d-2"), hook_body, 202),
    ]
    texts, ids = [], []
    for path, headers, body, expected in calls:
        headers = {"Content-Type": "application/json", **headers}
        r = httpx.post(f"{url}{path}", content=body, headers=headers, timeout=30)
        assert r.status_code == expected, (path, r.status_code, r.text)
        texts.append(f"{r.headers}\n{r.text}")
        if expected == 202:
            ids.append(r.json()["id"])
    return texts, ids


def wait_dead_lettered(d: Any, env: dict[str, str], ids: list[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    listed: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        listed = json.loads(cli(d, "dlq", "list", "--json", env=env).stdout)
        if {i["id"] for i in listed} >= set(ids):
            return listed
        time.sleep(0.3)
    raise AssertionError(f"not all dead-lettered: {listed}\n{d.log()}")


def test_secrets_stay_secret(rabbit: Any, echo: Echo, daemon_factory: Any) -> None:
    d = daemon_factory(config(rabbit.bus("bearer", "apikey", "basic"), echo.url), ROUTES, env=ENV,
                       admin_token=ADMIN)
    d.start()
    texts, ids = client_calls(d.url)
    env = {"ESB_ADMIN_URL": d.url, "ESB_ADMIN_TOKEN": ADMIN}
    listed = wait_dead_lettered(d, env, ids)
    errors = {i["destination"]: i["error"] or "" for i in listed}
    # The leak was really provoked: the destinations answered with the credentials, and what
    # the operator sees is their answer with the credentials taken out.
    assert echo.calls == {"/bearer": 1, "/basic": 1, "/apikey": 2}, echo.calls
    assert "HTTP 400" in errors["bearer"] and '"authorization": "***"' in errors["bearer"]
    assert "HTTP 503" in errors["apikey"] and '"x-api-key": "***"' in errors["apikey"]
    assert "HTTP 400" in errors["basic"] and '"decoded": "esb:***"' in errors["basic"]
    assert '"authorization": "***"' in errors["basic"]
    outputs = [*texts, json.dumps(listed),
               cli(d, "status", "--json", env=env).stdout,
               cli(d, "status", env=env).stdout,
               cli(d, "dlq", "list", env=env).stdout]
    for eid in ids:
        shown = json.loads(cli(d, "dlq", "show", eid, "--json", env=env).stdout)
        trace = json.loads(cli(d, "trace", eid, "--json", env=env).stdout)
        assert shown["id"] == eid and "***" in shown["esberror"]
        assert any("***" in str(e.get("detail")) for e in trace["events"]), trace
        outputs += [json.dumps(shown), json.dumps(trace),
                    cli(d, "dlq", "show", eid, env=env).stdout,
                    cli(d, "trace", eid, env=env).stdout]
    outputs.append(httpx.get(f"{d.url}/metrics").text)
    # A refused re-read of the configuration logs its problems, one of which quotes a value
    # that is also a secret (pasted in the wrong place): the redactor must catch it.
    path = d.root / "config" / "esb.yaml"
    text = path.read_text()
    listen = f"listen: 127.0.0.1:{d.port}"
    assert listen in text and "${ESB_TEST_TOKEN}" in text
    path.write_text(text.replace("${ESB_TEST_TOKEN}", TOKEN).replace(listen, f"listen: {TOKEN}"))
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "configuration refused" not in d.log(10**7) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert d.stop() == 0
    log = d.log(10**7)
    assert "configuration refused" in log and "not literal values" in log
    assert "http.listen: " in log and "(got '***')" in log
    assert log.count("delivery failed; dead-lettered") == 3
    outputs.append(log)
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output, (secret, output[:2000])
