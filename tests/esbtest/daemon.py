"""Run ``esb run`` as a real subprocess in a project folder of its own."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonProcess:
    """A daemon in ``root`` (its cwd), with ``config/esb.yaml`` and ``routes/`` written there."""

    def __init__(self, root: Path, config: dict[str, Any], routes: dict[str, Any] | None = None,
                 port: int | None = None, env: dict[str, str] | None = None,
                 admin_token: str = "test-admin-token") -> None:
        self.root = root
        self.port = port or free_port()
        config = dict(config)
        config.setdefault("http", {})["listen"] = f"127.0.0.1:{self.port}"
        config.setdefault("admin", {}).setdefault("token", admin_token)
        self.token = admin_token
        config.setdefault("logging", {"level": "info", "format": "json"})
        config.setdefault("routes", "routes/")
        (root / "config").mkdir(parents=True, exist_ok=True)
        (root / "routes").mkdir(exist_ok=True)
        (root / "config" / "esb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        for name, doc in (routes or {}).items():
            (root / "routes" / name).write_text(doc if isinstance(doc, str)
                                                else yaml.safe_dump(doc, sort_keys=False))
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / f"daemon-{self.port}.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 30) -> DaemonProcess:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen([sys.executable, "-m", "esb.bus.cli.main", "run"],
                                     cwd=self.root, env=self.env, stdout=log, stderr=log)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
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
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() \
            else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60) -> int:
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
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)
