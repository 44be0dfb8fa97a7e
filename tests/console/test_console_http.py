"""The console's login, session and CSRF rules over HTTP against a real daemon (embedded bus),
plus /openapi.json, /admin/openapi.json, /docs and `esb openapi`. The browser tests
(test_console_browser.py) drive the same pages in chromium."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

# Sessions last 4 s: short for the expiry test to wait out, long enough for a test's dozen
# requests on a loaded machine to run within one session.
SESSION_TTL = 4
CONFIG = {"sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
          "destinations": {"audit": {"adapter": "rest", "url": "http://127.0.0.1:9/audit"}},
          "admin": {"console": {"session_ttl": f"{SESSION_TTL}s"}, "max_body": "4KiB"}}
ROUTES = {"r.yaml": {"routes": [{"name": "all", "to": ["audit"]}]}}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from esbtest.daemon import DaemonProcess

    d = DaemonProcess(tmp_path_factory.mktemp("console-http"), CONFIG, ROUTES)
    d.start()
    yield d
    d.stop()


def cookie_of(response: httpx.Response, name: str) -> str:
    """The value a Set-Cookie gives ``name`` (httpx keeps no Secure cookie over http)."""
    for header in response.headers.get_list("set-cookie"):
        m = re.match(rf"{name}=([^;]*)", header)
        if m:
            return m.group(1)
    raise AssertionError(f"no {name} cookie set: {response.headers}")


def login(d: Any, token: str) -> tuple[httpx.Client, httpx.Response]:
    c = httpx.Client(base_url=d.url, timeout=10)
    form = c.get("/console/login")
    assert form.status_code == 200
    assert "Secure" in form.headers["set-cookie"] and "HttpOnly" in form.headers["set-cookie"]
    c.cookies.set("esb_console_login", cookie_of(form, "esb_console_login"))
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    return c, c.post("/console/login", data={"token": token, "csrf": csrf.group(1)})


def session(d: Any) -> tuple[httpx.Client, str]:
    c, r = login(d, d.token)
    assert r.status_code == 303, r.text
    set_cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("esb_console="))
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert flag in set_cookie, set_cookie
    c.cookies.set("esb_console", cookie_of(r, "esb_console"))
    page = c.get("/console/overview")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    return c, token.group(1)


def test_a_wrong_token_is_refused_with_a_visible_error(daemon: Any) -> None:
    _, r = login(daemon, "not-the-token")
    assert r.status_code == 401
    assert 'id="login-error"' in r.text and "Wrong admin token" in r.text
    assert "esb_console=" not in r.headers.get("set-cookie", "")


def test_a_login_form_from_elsewhere_is_refused(daemon: Any) -> None:
    c = httpx.Client(base_url=daemon.url)
    r = c.post("/console/login", data={"token": daemon.token, "csrf": "forged"})
    assert r.status_code == 403
    assert "esb_console=" not in r.headers.get("set-cookie", "")


def test_pages_need_a_session(daemon: Any) -> None:
    c = httpx.Client(base_url=daemon.url)
    for page in ("overview", "routes", "deadletters", "trace", "plugins"):
        r = c.get(f"/console/{page}")
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
    c.cookies.set("esb_console", "forged.cookie")
    r = c.get("/console/overview")
    assert r.headers["location"] == "/console/login?expired=1"


def test_a_session_reads_the_admin_api_and_acts_only_with_the_csrf_token(daemon: Any) -> None:
    c, csrf = session(daemon)
    assert c.get("/admin/status").status_code == 200
    for page in ("overview", "routes", "deadletters", "trace", "plugins"):
        assert c.get(f"/console/{page}").status_code == 200
    refused = c.post("/admin/dlq/purge")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "CSRF" in refused.json()["title"]
    assert c.post("/admin/dlq/purge", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    ok = c.post("/admin/dlq/purge", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json() == {"purged": 0}
    # logging out needs the token too, then clears the cookie
    assert c.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
    out = c.post("/console/logout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/console/login?out=1"
    assert 'esb_console=""' in out.headers["set-cookie"]


def test_an_expired_session_is_refused(daemon: Any) -> None:
    c, _ = session(daemon)
    time.sleep(SESSION_TTL + 0.5)
    assert c.get("/admin/status").status_code == 401
    r = c.get("/console/overview")
    assert r.status_code == 303 and r.headers["location"] == "/console/login?expired=1"
    assert "expired" in c.get("/console/login?expired=1").text


def test_admin_bodies_are_capped_and_decoded_like_the_consoles(daemon: Any) -> None:
    """admin.max_body (4KiB here) refuses a longer body, declared or gzip-inflated, with 413; a
    gzip body within it is read decoded; an encoding esb does not decode is refused."""
    send = "/admin/send?type=t&source=shop"
    big = daemon.admin("POST", send, content=b'{"a": "' + b"x" * 5000 + b'"}')
    assert big.status_code == 413 and "admin.max_body" in big.json()["detail"]
    zipped = {"Content-Encoding": "gzip"}
    ok = daemon.admin("POST", send, content=gzip.compress(b'{"a": 1}'), headers=zipped)
    assert ok.status_code == 202 and ok.json()["destinations"] == ["dest.audit"]
    bomb = daemon.admin("POST", send, content=gzip.compress(b" " * 100_000), headers=zipped)
    assert bomb.status_code == 413
    br = daemon.admin("POST", send, content=b"{}", headers={"Content-Encoding": "br"})
    assert br.status_code == 415


def test_documents_are_served_and_valid(daemon: Any) -> None:
    inbound = httpx.get(f"{daemon.url}/openapi.json").json()
    validate(inbound)
    assert "/in/shop" in inbound["paths"]
    assert httpx.get(f"{daemon.url}/admin/openapi.json").status_code == 401
    admin = daemon.admin("GET", "/admin/openapi.json").json()
    validate(admin)
    docs = httpx.get(f"{daemon.url}/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert httpx.get(f"{daemon.url}/console/static/vendor/swagger-ui/swagger-ui-bundle.js"
                     ).status_code == 200
    assert httpx.get(f"{daemon.url}/console/static/vendor/swagger-ui/LICENSE").status_code == 200


def test_esb_openapi_writes_both_documents(daemon: Any, tmp_path: Path) -> None:
    env = {**os.environ, "ESB_ADMIN_URL": daemon.url, "ESB_ADMIN_TOKEN": daemon.token}

    def esb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "esb.bus.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    r = esb("openapi", "-o", str(tmp_path / "in.json"))
    assert r.returncode == 0, r.stderr
    validate(json.loads((tmp_path / "in.json").read_text()))
    r = esb("openapi", "--admin", "-o", str(tmp_path / "admin.json"))
    assert r.returncode == 0, r.stderr
    assert "/admin/dlq/replay" in json.loads((tmp_path / "admin.json").read_text())["paths"]
    r = esb("openapi", "--config", str(daemon.root / "config" / "esb.yaml"))  # offline
    assert r.returncode == 0, r.stderr
    assert "/in/shop" in json.loads(r.stdout)["paths"]
    bad = esb("--url", "http://127.0.0.1:9", "openapi")
    assert bad.returncode == 1 and "cannot reach" in bad.stderr


def test_sources_cannot_take_the_consoles_paths(tmp_path: Path) -> None:
    from esb.bus.config.loader import load_config

    cfg = tmp_path / "esb.yaml"
    cfg.write_text("sources:\n  s: {adapter: rest, path: /console/x}\n"
                   "  t: {adapter: rest, path: /docs}\n")
    with pytest.raises(Exception) as err:
        load_config(cfg, env={})
    text = str(getattr(err.value, "problems", err.value))
    assert "sources.s" in text and "sources.t" in text and "/console" in text
