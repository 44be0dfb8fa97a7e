"""Run a real ``esb run`` daemon as a subprocess in a folder of its own, for end-to-end tests
of an adapter: write ``config/esb.yaml`` and ``routes/``, start, wait for ``/readyz``, stop
with SIGTERM (the daemon drains and exits 0).

esb's own suite (``tests/esbtest/daemon.py``) and benchmark harness (``bench/harness``) drive
their daemons with this module too."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import yaml

ADMIN_TOKEN = "esb-test-kit-admin-token"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now, for a server started later.

    Chosen below the kernel's ephemeral port range, from which the client side of every
    outgoing connection takes its port: a port from that range (what binding port 0 gives)
    may be taken by some connection between this call and the server's own bind."""
    low = _ephemeral_low()
    pick = random.SystemRandom()  # not the random module's state, which tests may seed
    for _ in range(100):
        port = pick.randrange(10_000, low) if low > 11_000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free TCP port found on 127.0.0.1")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM ``proc`` (unless it has exited), wait ``timeout`` for it, then SIGKILL.
    Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


class EsbDaemon:
    """A daemon whose working directory is ``root``; relative paths in ``config`` (folders,
    layout files, WSDLs) resolve against ``root``. The embedded bus is used unless ``config``
    names another.

    ``routes`` maps file names under ``routes/`` to a document (written as YAML) or to text
    (written as is); ``files`` maps paths under ``root`` to text or bytes. ``admin_token`` is
    what :meth:`admin` sends; unless ``config`` names its own token, the config refers to it
    as ``${ESB_ADMIN_TOKEN}`` and the daemon's environment sets that variable (secrets are
    never literal values in a configuration). Secrets of ``config`` itself are written as
    ``${VAR}`` references too, with their values in ``env``.
    The daemon's stdout and stderr go to ``log_path`` (``root/daemon-<port>.log``).

    ``config=None`` runs a project folder as it is (``root/config/esb.yaml`` and its routes, as
    ``esb init`` or an example makes them): nothing is written, and the folder's configuration
    must take its listen address from ``${ESB_LISTEN}``, which the daemon's environment sets."""

    def __init__(self, root: Path, config: dict[str, Any] | None,
                 routes: dict[str, Any] | None = None, *, port: int | None = None,
                 env: dict[str, str] | None = None, admin_token: str = ADMIN_TOKEN,
                 files: dict[str, str | bytes] | None = None,
                 log_path: Path | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.token = admin_token
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or root / f"daemon-{self.port}.log"
        self._client: httpx.Client | None = None
        if config is None:
            self.env.update(ESB_LISTEN=f"127.0.0.1:{self.port}", ESB_ADMIN_TOKEN=admin_token)
            return
        config = dict(config)
        config.setdefault("bus", {"url": "embedded"})
        config.setdefault("http", {})["listen"] = f"127.0.0.1:{self.port}"
        admin = config["admin"] = dict(config.get("admin") or {})
        kit_token = "token" not in admin
        admin.setdefault("token", "${ESB_ADMIN_TOKEN}")
        config.setdefault("logging", {"level": "info", "format": "json"})
        config.setdefault("routes", "routes/")
        (root / "config").mkdir(parents=True, exist_ok=True)
        (root / "routes").mkdir(exist_ok=True)
        (root / "config" / "esb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        for name, doc in (routes or {}).items():
            text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
            (root / "routes" / name).write_text(text)
        for name, content in (files or {}).items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        if kit_token:
            self.env["ESB_ADMIN_TOKEN"] = admin_token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 30) -> Self:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen([sys.executable, "-m", "esb.bus.cli.main", "run"],
                                     cwd=self.root, env=self.env, stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def http(self) -> httpx.Client:
        """One HTTP client for this daemon's calls (a new client per call costs ~20 ms of CPU
        for its TLS context, which polling loops multiply)."""
        if self._client is None:
            self._client = httpx.Client(timeout=30, trust_env=False)
        return self._client

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait for ``/readyz``; raise with the daemon's log when it exits or times out. A
        daemon that does not come up is stopped before the error is raised: a caller of
        :meth:`start` has no handle to stop it, and it would outlive the test, holding its
        port and consuming from its queues."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.http.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        message = f"daemon not ready within {timeout}s:\n{self.log()}"
        self.stop(timeout=10)
        raise RuntimeError(message)

    def log(self, chars: int = 6000) -> str:
        """The end of the daemon's log (stdout and stderr)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait for the drain; SIGKILL after ``timeout``. Returns the exit code."""
        self._close_client()
        return 0 if self.proc is None else terminate(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL (no drain), as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_client()

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Call the daemon's admin API with its token."""
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.request(method, f"{self.url}{path}", headers=headers, **kw)


D = TypeVar("D", bound=EsbDaemon)


@contextmanager
def daemon_factory(tmp_path: Path, cls: type[D], stop_timeout: float = 30,
                   ) -> Iterator[Callable[..., D]]:
    """``make(config, routes=None, name="d", **kw)`` → an unstarted ``cls`` in
    ``tmp_path / name``; all are stopped (SIGTERM, ``stop_timeout``) on exit. The body of the
    ``esb_daemon_factory`` fixture."""
    made: list[D] = []

    def make(config: dict[str, Any], routes: dict[str, Any] | None = None,
             name: str = "d", **kw: Any) -> D:
        daemon = cls(tmp_path / name, config, routes, **kw)
        made.append(daemon)
        return daemon

    try:
        yield make
    finally:
        for daemon in made:
            daemon.stop(timeout=stop_timeout)
