"""Run a real ``esb run`` daemon as a subprocess in a folder of its own, for end-to-end tests
of an adapter: write ``config/esb.yaml`` and ``routes/``, start, wait for ``/readyz``, stop
with SIGTERM (the daemon drains and exits 0)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ADMIN_TOKEN = "esb-test-kit-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EsbDaemon:
    """A daemon whose working directory is ``root``; relative paths in ``config`` (folders,
    layout files, WSDLs) resolve against ``root``. The embedded bus is used unless ``config``
    names another."""

    def __init__(self, root: Path, config: dict[str, Any],
                 routes: dict[str, Any] | None = None, *, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        config = dict(config)
        config.setdefault("bus", {"url": "embedded"})
        config.setdefault("http", {})["listen"] = f"127.0.0.1:{self.port}"
        config.setdefault("admin", {})["token"] = ADMIN_TOKEN
        config.setdefault("logging", {"level": "info", "format": "json"})
        config.setdefault("routes", "routes/")
        (root / "config").mkdir(parents=True, exist_ok=True)
        (root / "routes").mkdir(exist_ok=True)
        (root / "config" / "esb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        for name, doc in (routes or {}).items():
            text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
            (root / "routes" / name).write_text(text)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / f"daemon-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 30) -> EsbDaemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen([sys.executable, "-m", "esb.bus.cli.main", "run"],
                                     cwd=self.root, env=self.env, stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait for ``/readyz``; raise with the daemon's log when it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daemon not ready within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """The end of the daemon's log (stdout and stderr)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait for the drain; SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Call the daemon's admin API with its token."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)
