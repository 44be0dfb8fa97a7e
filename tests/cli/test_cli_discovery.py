"""How the esb command finds and talks to a running daemon: its address and token from the
state folder (in the working folder or above it), ``--url``/``--token`` anywhere on the line,
``esb run --listen``, a taken port, ``--version`` and one error style.

The client commands run in this process (:mod:`esbtest.cli`, with the working folder and
environment swapped for the call), which spares an interpreter per command; ``esb run`` runs
as the real command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from esbtest import cli
from esbtest.daemon import DaemonProcess

from esb.adapters.testing.daemon import free_port
from esb.bus.cli.main import hoist_global_options

ROUTES = {"r.yaml": {"routes": [{"name": "all", "to": ["out"]}]}}
#: The variables that point the command at a daemon: unset unless a test sets them.
POINTERS = ("ESB_ADMIN_URL", "ESB_ADMIN_TOKEN", "ESB_LISTEN", "ESB_CONFIG")


def esb(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """The esb command with none of the variables that point it at a daemon."""
    unset: dict[str, str | None] = dict.fromkeys(POINTERS)
    return cli.run(*args, cwd=cwd, env={**unset, **(env or {})})


def esb_run(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``esb run ARGS`` as a subprocess (a daemon configures its process), without the
    variables that point it at a daemon."""
    base = {k: v for k, v in os.environ.items() if k not in POINTERS}
    return subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "run", *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def _config(tmp: Path) -> dict[str, Any]:
    return {"bus": {"url": "embedded"}, "admin": {"token": ""},  # the daemon makes one
            "destinations": {"out": {"adapter": "file", "directory": str(tmp / "out")}}}


# Shared by the two tests that only ask it things.
@pytest.fixture(scope="module")
def daemon(module_daemon_factory: Any, tmp_path_factory: pytest.TempPathFactory
           ) -> DaemonProcess:
    """A daemon with a made-up token, listening on a port given only by ``--listen``."""
    port = free_port()
    d = module_daemon_factory(_config(tmp_path_factory.mktemp("listen")), ROUTES,
                              run_args=["--listen", f"127.0.0.1:{port}"])
    d.port = port
    return d.start()


def test_cli_finds_token_and_address_from_a_subfolder(daemon: DaemonProcess) -> None:
    token = (daemon.root / ".esb" / "admin.token").read_text().strip()
    assert (daemon.root / ".esb" / "admin.url").read_text().strip() == daemon.url
    deeper = daemon.root / "work" / "deeper"
    deeper.mkdir(parents=True)
    r = esb("status", "--json", cwd=deeper)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["routes"]["count"] == 1
    # --url and --token after the subcommand (and =-joined) work like before it
    elsewhere = daemon.root.parent
    r = esb("status", "--json", f"--url={daemon.url}", "--token", token, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    r = esb("routes", "list", "--url", daemon.url, "--token", "wrong", cwd=elsewhere)
    assert r.returncode == 1
    assert "401" in r.stderr and ".esb/admin.token" in r.stderr
    r = esb("dlq", "list", "--token", "wrong", "--url", daemon.url, cwd=elsewhere)
    assert r.returncode == 1 and ".esb/admin.token" in r.stderr
    assert r.stderr.startswith("esb: ") and "Error:" not in r.stderr


def test_cli_follows_esb_listen(daemon: DaemonProcess, tmp_path: Path) -> None:
    token = (daemon.root / ".esb" / "admin.token").read_text().strip()
    away = tmp_path / "away"
    away.mkdir()
    r = esb("status", cwd=away, env={"ESB_LISTEN": f"0.0.0.0:{daemon.port}",
                                     "ESB_ADMIN_TOKEN": token})
    assert r.returncode == 0, r.stderr
    assert "connected" in r.stdout


def test_a_taken_port_is_one_clear_line(tmp_path: Path, daemon_factory: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        d = daemon_factory(_config(tmp_path), ROUTES, run_args=["--listen",
                                                                 f"127.0.0.1:{port}"])
        d.port = port
        d.start(wait=False)
        assert d.proc is not None
        assert d.proc.wait(60) == 1
    log = d.log()
    assert f"esb: cannot listen on 127.0.0.1:{port}: Address already in use" in log
    assert "Traceback" not in log and "never retrieved" not in log


def test_listen_must_be_host_port(tmp_path: Path) -> None:
    r = esb_run("--listen", "8080", cwd=tmp_path, env={"ESB_CONFIG": str(
        Path(__file__).resolve().parents[2] / "config" / "esb.yaml")})
    assert r.returncode == 2
    assert "--listen" in r.stderr and "HOST:PORT" in r.stderr


def test_version_and_error_prefix(tmp_path: Path) -> None:
    from importlib.metadata import version

    r = esb("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"esb {version('esb')}"
    r = esb("dlq", "show", "abc", "--url", "http://127.0.0.1:9", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("esb: cannot reach the esb daemon at http://127.0.0.1:9")
    r = esb("nosuch", cwd=tmp_path)
    assert r.returncode == 2 and "esb: No such command 'nosuch'" in r.stderr


def test_hoisting_keeps_everything_after_a_double_dash() -> None:
    assert hoist_global_options(["status", "--token", "t", "--json"]) == \
        ["--token", "t", "status", "--json"]
    assert hoist_global_options(["send", "--", "--url"]) == ["send", "--", "--url"]


def test_a_daemon_started_from_another_folder_resolves_paths_in_its_project(
        tmp_path: Path) -> None:
    """Relative paths (routes, the file destination, the state folder) resolve against the
    configuration folder — the project above ``config/`` — not the folder esb runs in."""
    import time

    import httpx
    import yaml

    project, away = tmp_path / "project", tmp_path / "away"
    (project / "config").mkdir(parents=True)
    (project / "routes").mkdir()
    away.mkdir()
    port = free_port()
    (project / "config" / "esb.yaml").write_text(yaml.safe_dump({
        "http": {"listen": f"127.0.0.1:{port}"},
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"out": {"adapter": "file", "directory": "outbox"}},
        "routes": "routes/"}))
    (project / "routes" / "r.yaml").write_text(yaml.safe_dump(ROUTES["r.yaml"]))
    base = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "esb.bus.cli.main", "run", "--config",
                                 str(project / "config" / "esb.yaml")], cwd=away, env=base,
                                stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60  # a start takes seconds on a busy machine
        while True:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
            time.sleep(0.1)
        r = httpx.post(f"http://127.0.0.1:{port}/in/shop/order.created", json={"n": 1})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 20
        while not list((project / "outbox").glob("[!.]*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list((project / "outbox").glob("[!.]*"))) == 1
        assert (project / ".esb" / "admin.token").exists()
        assert not list(away.iterdir())  # nothing written where it was started
        # the CLI, in the project, finds that daemon
        r2 = esb("status", "--json", cwd=project / "routes")
        assert r2.returncode == 0, r2.stderr
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_file_destination_whose_folder_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "routes").mkdir()
    (tmp_path / "outbox").write_text("I am a file")
    (tmp_path / "config" / "esb.yaml").write_text(
        "destinations:\n"
        "  erp: {adapter: file, directory: outbox}\n"
        "  audit:\n"
        "    adapter: file\n"
        "    directory: outbox/audit\n")
    (tmp_path / "routes" / "r.yaml").write_text("routes:\n  - name: all\n    to: [erp]\n")
    r = esb_run("--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "config/esb.yaml:2: destinations.erp.directory:" in r.stderr
    assert f"{tmp_path / 'outbox'} is a file, not a folder" in r.stderr
    assert "config/esb.yaml:5: destinations.audit.directory:" in r.stderr
    assert "is inside" in r.stderr and "Traceback" not in r.stderr
