"""The processes a run starts: the sink, the esb daemon, the ceiling relay, the load generator.

Each is a child process we own; ``stop`` sends SIGTERM (SIGKILL only if it does not exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from esb.adapters.testing.daemon import EsbDaemon, terminate
from harness.util import free_port, rss_kib

BENCH = Path(__file__).resolve().parents[1]


class HarnessError(RuntimeError):
    """The harness itself failed (a process did not start, messages were lost ...)."""


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{BENCH}{os.pathsep}{path}" if path else str(BENCH),
            "PYTHONUNBUFFERED": "1"}


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, timeout: float = 5.0) -> int:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status


class Child:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], cwd: Path, log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.env = env or _env()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"{self.name} exited with "
                                   f"{self.proc.returncode if self.proc else '?'}:\n"
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_get(url, 1.0)[0] == 200:
                    return
            time.sleep(0.1)
        raise HarnessError(f"{self.name} not ready within {timeout:g}s:\n{self.log_tail()}")

    def rss(self) -> int | None:
        return rss_kib(self.pid) if self.alive() else None

    def stop(self, timeout: float = 30) -> int | None:
        return None if self.proc is None else terminate(self.proc, timeout)


class Sink(Child):
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        super().__init__("sink", [sys.executable, "-m", "harness.sink", "--port",
                                  str(self.port)], BENCH, log_dir)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        self.wait_http(f"{self.url}/_stats", 20)

    def reset(self) -> None:
        http_post(f"{self.url}/_reset")

    def stats(self, latencies: bool = False) -> dict[str, Any]:
        status, body = http_get(f"{self.url}/_stats" + ("?latencies=1" if latencies else ""),
                                30)
        if status != 200:
            raise HarnessError(f"sink stats: HTTP {status}")
        return dict(orjson.loads(body))

    def wait_count(self, count: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while stats["count"] < count and time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"sink died:\n{self.log_tail()}")
            time.sleep(0.05)
            stats = self.stats()
        return stats


class Daemon(EsbDaemon):
    """``esb run`` in a project folder of its own (config/esb.yaml + routes/): the test kit's
    daemon driver, logging to ``log_dir/<name>.log``."""

    def __init__(self, root: Path, bus_url: str, prefix: str, sink_url: str,
                 source: dict[str, Any], routes: dict[str, Any],
                 files: dict[str, bytes | str], log_dir: Path, name: str,
                 workers: int = 1, destination: dict[str, Any] | None = None) -> None:
        self.name = name
        self.workers = workers
        self.prefix = prefix
        self.bus_url = bus_url
        config = {
            "bus": {"url": bus_url, "prefix": prefix, "prefetch": 200,
                    "state_dir": ".esb"},
            "http": {"max_body": 16 * 1024 * 1024},
            "logging": {"level": "info", "format": "json"},
            "sources": {"in": source},
            "destinations": {"sink": _with_sink(destination, sink_url) if destination else {
                "adapter": "rest", "url": f"{sink_url}/sink",
                "delivery": {"concurrency": 64, "timeout": "10s"}}},
            "routes": "routes/",
        }
        # JSON is YAML too, and writes 10,000 routes in milliseconds rather than seconds.
        texts = {fname: json.dumps(doc, indent=1) for fname, doc in routes.items()}
        super().__init__(root, config, texts, files=files, admin_token="bench-admin-token",
                         log_path=log_dir / f"{name}.log",
                         env={"ESB_WORKERS": str(workers)} if workers > 1 else None)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait: bool = True, timeout: float = 120) -> Daemon:
        # the log is appended to across rounds: look only at what this start writes
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            super().start(wait, timeout)
        except RuntimeError as exc:
            raise HarnessError(f"{self.name}: {exc}") from None
        if wait and self.workers > 1:
            self._wait_all_workers(timeout)
        return self

    def _wait_all_workers(self, timeout: float) -> None:
        """/readyz answers once one worker runs; measure only once all of them do (their
        "esb running" log lines), or the first phase would see a partial daemon."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                running = f.read().count(b'"event": "esb running"')
            if running >= self.workers:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise HarnessError(f"{self.name}: {self.workers} workers not running within "
                           f"{timeout:g}s:\n{self.log_tail()}")

    def rss(self) -> int | None:
        return rss_kib(self.pid) if self.proc is not None and self.proc.poll() is None else None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log(chars)

    def cleanup(self) -> None:
        from esb.bus.broker.topology import Topology

        with contextlib.suppress(Exception):
            Topology(self.prefix).delete(self.bus_url, ["sink"])


class Ceiling(Child):
    def __init__(self, bus_url: str, queue: str, sink_url: str, log_dir: Path,
                 workers: int = 1, client: str = "httpx") -> None:
        self.port = free_port()
        self.queue = queue
        self.bus_url = bus_url
        self.workers = workers
        super().__init__("ceiling", [sys.executable, str(BENCH / "ceiling.py"), "--port",
                                     str(self.port), "--sink", f"{sink_url}/sink", "--queue",
                                     queue, "--url", bus_url, "--workers", str(workers),
                                     "--client", client],
                         BENCH, log_dir)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        super().start()
        self.wait_http(f"{self.url}/readyz", timeout)

    def cleanup(self) -> None:
        _delete_queue(self.bus_url, self.queue)


def _delete_queue(bus_url: str, queue: str) -> None:
    import pika

    with contextlib.suppress(Exception):
        conn = pika.BlockingConnection(pika.URLParameters(bus_url))
        try:
            conn.channel().queue_delete(queue)
        finally:
            conn.close()


def _with_sink(value: Any, sink_url: str) -> Any:
    """``value`` with ``{sink}`` in its strings replaced by the sink's URL."""
    if isinstance(value, str):
        return value.replace("{sink}", sink_url)
    if isinstance(value, dict):
        return {k: _with_sink(v, sink_url) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_sink(v, sink_url) for v in value]
    return value


class Proxy(Child):
    """bench/direct_proxy.py: the request/reply scenarios' reference (with ``--bus``, the lean
    request/reply relay: ``{bus}`` and ``{queue}`` in its arguments are this run's broker URL
    and a queue of its own, deleted afterwards)."""

    def __init__(self, sink_url: str, root: Path, args: list[str], files: dict[str, Any],
                 log_dir: Path, workers: int = 1, bus_url: str = "", queue: str = "") -> None:
        self.port = free_port()
        self.bus_url, self.queue = bus_url, queue
        root.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        argv = [a.replace("{bus}", bus_url).replace("{queue}", queue)
                for a in _with_sink(args, sink_url)]
        super().__init__("proxy", [sys.executable, str(BENCH / "direct_proxy.py"), "--port",
                                   str(self.port), "--workers", str(workers), *argv],
                         root, log_dir)
        self.url = f"http://127.0.0.1:{self.port}"
        self.uses_bus = "--bus" in argv

    def start(self, timeout: float = 30) -> None:
        super().start()
        self.wait_http(f"{self.url}/readyz", timeout)

    def cleanup(self) -> None:
        if self.uses_bus:
            _delete_queue(self.bus_url, self.queue)


class Loadgen:
    """One run of the load generator (``harness.loadgen``) in its own process."""

    def __init__(self, url: str, template: Path, headers: dict[str, str], *, n: int = 0,
                 duration: float = 0.0, concurrency: int = 64, seq_start: int = 0,
                 log_dir: Path) -> None:
        self.argv = [sys.executable, "-m", "harness.loadgen", "--url", url, "--template",
                     str(template), "--n", str(n), "--concurrency", str(concurrency),
                     "--seq-start", str(seq_start)]
        if duration:
            self.argv += ["--duration", str(duration)]
        for k, v in headers.items():
            self.argv += ["--header", f"{k}: {v}"]
        self.log_path = log_dir / "loadgen.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Loadgen:
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, cwd=BENCH, env=_env(),
                                         stdout=subprocess.PIPE, stderr=err)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def result(self, timeout: float = 900) -> dict[str, Any]:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise HarnessError(f"load generator still running after {timeout:g}s") from None
        if self.proc.returncode != 0 or not out.strip():
            raise HarnessError(f"load generator exited with {self.proc.returncode}; see "
                               f"{self.log_path}")
        return dict(orjson.loads(out.splitlines()[-1]))

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.terminate()
            self.proc.wait(10)


def run_loadgen(url: str, template: Path, headers: dict[str, str], *, log_dir: Path,
                timeout: float = 900, **kw: Any) -> dict[str, Any]:
    gen = Loadgen(url, template, headers, log_dir=log_dir, **kw).start()
    try:
        return gen.result(timeout)
    finally:
        gen.kill()
