"""The esb command against a running daemon and on files: exit codes and clear messages.

The commands run in this process (:mod:`esbtest.cli`: the console script's entry point, its
streams and working folder swapped), which spares an interpreter per command; one test runs
the installed command as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from esbtest import cli
from esbtest.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parents[2]


def esb(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return cli.run(*args, cwd=cwd, env=env, input=stdin.decode() if stdin else None)


# Shared: the tests only read from it, and only test_send_and_status sends.
@pytest.fixture(scope="module")
def daemon(module_sink: Any, module_daemon_factory: Any) -> DaemonProcess:
    config = {"bus": {"url": "embedded"},
              "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
              "destinations": {"out": {"adapter": "rest", "url": module_sink.url + "/x"}}}
    routes = {"r.yaml": {"routes": [{"name": "orders", "match": {"type": ["order.created"]},
                                     "to": ["out"]}]}}
    return module_daemon_factory(config, routes).start()


def test_send_and_status(daemon: DaemonProcess, module_sink: Any, tmp_path: Path) -> None:
    sink = module_sink
    env = {"ESB_ADMIN_URL": daemon.url, "ESB_ADMIN_TOKEN": daemon.token}
    msg = tmp_path / "order.json"
    msg.write_text('{"n": 1}')
    r = esb("send", "--type", "order.created", "--source", "shop", str(msg), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("accepted ") and "dest.out" in r.stdout
    assert sink.wait_for(1, timeout=20)
    assert json.loads(sink.received[0].body) == {"n": 1}

    r = esb("send", "--type", "nothing.matches", "--source", "cli", "-", env=env,
            stdin=b"hello")
    assert r.returncode == 0 and "unroutable" in r.stdout
    r = esb("send", "--json", "--type", "order.created", "--source", "shop", str(msg),
            env=env)
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)
    assert sent["destinations"] == ["dest.out"] and sent["id"]
    assert sink.wait_for(2, timeout=20)

    r = esb("status", "--json", env=env)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["bus"] == {"kind": "embedded", "durable": False, "connected": True}
    assert st["queues"]["unroutable"] == 1
    r = esb("status", env=env)
    assert "DESTINATION" in r.stdout and "NOT durable" in r.stdout
    assert "unroutable 1" in r.stdout


def test_cli_errors_are_clear(daemon: DaemonProcess) -> None:
    r = esb("status", env={"ESB_ADMIN_URL": daemon.url, "ESB_ADMIN_TOKEN": "wrong"})
    assert r.returncode == 1 and "401" in r.stderr and "ESB_ADMIN_TOKEN" in r.stderr
    r = esb("status", env={"ESB_ADMIN_URL": "http://127.0.0.1:9", "ESB_ADMIN_TOKEN": "x"})
    assert r.returncode == 1 and "cannot reach the esb daemon" in r.stderr


def test_routes_validate_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text(
        "sources: {shop: {adapter: rest, path: /in/shop}}\n"
        "destinations: {erp: {adapter: rest, url: 'http://127.0.0.1:1/x'}}\n")
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "a.yaml").write_text(
        "routes:\n"
        "  - name: one\n"
        "    from: [shoop]\n"
        "    match: {type: order.created}\n"
        "    to: [erpp]\n"
        "  - name: one\n"
        "    to: [erp]\n")
    (routes / "b.yaml").write_text("routes:\n  - name: two\n    to: [erp]\n    colour: red\n")
    r = esb("routes", "validate", "routes", cwd=tmp_path)
    assert r.returncode == 2
    err = r.stderr
    assert "b.yaml:4: routes.0.colour: unknown key" in err
    r = esb("routes", "validate", "routes/a.yaml", cwd=tmp_path)
    err = r.stderr
    assert r.returncode == 2
    assert "a.yaml:6: routes[1].name: duplicate route name 'one'" in err
    (routes / "a.yaml").write_text(
        "routes:\n"
        "  - name: one\n"
        "    from: [shoop]\n"
        "    match: {type: order.created}\n"
        "    to: [erpp]\n")
    r = esb("routes", "validate", "routes/a.yaml", cwd=tmp_path)
    err = r.stderr
    assert "a.yaml:3: one: from: unknown source 'shoop'. Did you mean 'shop'?" in err
    assert "a.yaml:4: one:" in err and "type" in err
    assert "a.yaml:5: one: to[0]: unknown destination 'erpp'. Did you mean 'erp'?" in err
    (routes / "a.yaml").write_text("routes:\n  - name: one\n    to: [erp]\n")
    r = esb("routes", "validate", "routes/a.yaml", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("ok: 1 routes")


def test_shipped_routes_validate() -> None:
    # the installed command itself, as a shell runs it
    r = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "routes", "validate",
                        "routes"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_adapters_list() -> None:
    r = esb("adapters", "list", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["rest"]["directions"] == "inbound,outbound"
    assert rows["file"]["directions"] == "outbound"
    r = esb("adapters", "list")
    assert r.stdout.splitlines()[0].split() == ["NAME", "PACKAGE", "VERSION", "DIRECTIONS",
                                                "SUMMARY"]
    assert "Each envelope written as a file" in r.stdout


def test_transform_prints_the_result(tmp_path: Path) -> None:
    sample = tmp_path / "order.json"
    sample.write_text('{"customer": "ACME", "country": "DE", "total": 5, '
                      '"lines": [{"sku": "A", "qty": 1}]}')
    chain = tmp_path / "chain.yaml"
    chain.write_text(f"- json-to-xml: {{root: order}}\n"
                     f"- xslt: {ROOT / 'config/xslt/canonical-to-erp.xsl'}\n")
    r = esb("transform", str(chain), str(sample), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "<SalesOrder" in r.stdout and '<Line sku="A" qty="1"/>' in r.stdout
    r = esb("transform", "xslt", str(sample), cwd=tmp_path)
    assert r.returncode != 0 and "esb:" in r.stderr
