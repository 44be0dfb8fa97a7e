"""``esb run --workers N``: one daemon on N cores, as N worker processes under a small
supervisor.

The supervisor has no event loop and routes no message. Before any worker starts it makes sure
the admin token exists (so workers read one file rather than race to create different tokens),
binds the HTTP address once (:func:`~esb.bus.runtime.http.bind_listener`: on Linux each worker
then listens on a socket of its own on it, and the kernel spreads connections over them), and
makes a private directory for prometheus_client's multiprocess files. Each worker is
``python -m esb.bus.cli.main run --config FILE`` with the hidden options ``--listen-fd`` (the
socket, passed with ``pass_fds``), ``--worker-index`` and
``--workers``: a normal daemon (see :mod:`esb.bus.runtime.worker_role`). Everything the workers
share goes through the broker, exactly as between separate daemons.

Worker 1 starts alone; the others start once it reports (through a pipe, ``--ready-fd``) that it
is running, or has exited, or after :data:`FIRST_READY_TIMEOUT`. On a fresh broker prefix the
first worker to start seeds the route store with the configured route files; started together,
every worker would find the store empty and seed it, leaving N identical versions.

Signals: SIGTERM/SIGINT are forwarded to every worker, which drain and exit; the supervisor
exits 0 when all of them exited 0, else 1 (a worker the forwarded signal stopped while it was
still loading, before its daemon handles signals, had taken no work: that counts as 0). SIGHUP
is forwarded.

Crashes: a worker that exits on its own is started again after :data:`RESTART_DELAY` (doubling
while it keeps dying within :data:`EARLY_EXIT` of its start, up to :data:`MAX_RESTART_DELAY`) —
unless it exited with a non-zero code within :data:`EARLY_EXIT` of starting: that is a worker
that cannot start (bad route files, a broken plugin ...), so the supervisor stops the others and
exits with that code rather than loop. A worker killed by a signal (OOM killer, ``kill -9``) is
always restarted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog
from prometheus_client.multiprocess import mark_process_dead

from esb.bus.config.loader import Loaded
from esb.bus.runtime.admin_token import admin_token
from esb.bus.runtime.http import bind_listener
from esb.bus.runtime.worker_board import WorkerBoard
from esb.bus.runtime.worker_role import METRICS_DIR_ENV

log = structlog.get_logger("esb.supervisor")

#: A worker exiting non-zero this soon after its start failed to start: no restart.
EARLY_EXIT = 10.0
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
#: The other workers start when worker 1 runs, or after this long anyway.
FIRST_READY_TIMEOUT = 120.0  # a large route set takes a while to compile
#: How often the supervisor looks at its workers and at signals received.
TICK = 0.1


@dataclass
class _Seat:
    """One worker slot: its current process (None while waiting to restart)."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None
    quick_deaths: int = 0
    last_code: int | None = None


class Supervisor:
    """Runs ``count`` workers for the configuration at ``config_path`` until stopped."""

    def __init__(self, loaded: Loaded, config_path: Path, count: int) -> None:
        self.loaded = loaded
        self.config_path = config_path
        self.seats = [_Seat(i) for i in range(1, count + 1)]
        self._signals: list[int] = []
        self._stopping = False
        self._fatal: int | None = None
        self._listener: socket.socket | None = None
        self._metrics_dir = ""
        #: read end of worker 1's ready pipe, until the other workers have been started
        self._first_ready: int | None = None
        self._first_deadline = 0.0

    def run(self) -> int:
        """Start the workers and supervise them; the exit code of ``esb run``.
        Raises :class:`ListenError` when the listen address cannot be bound."""
        cfg = self.loaded.config
        admin_token(self.loaded)  # once, before any worker can race to create it
        self._listener = bind_listener(cfg.http.host, cfg.http.port, for_workers=True)
        self._metrics_dir = tempfile.mkdtemp(prefix="esb-metrics-")
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            log.info("esb supervisor running", listen=cfg.http.listen, workers=len(self.seats),
                     pid=os.getpid(), metrics_dir=self._metrics_dir)
            self._start_first()
            while not (self._stopping and all(s.proc is None for s in self.seats)):
                self._handle_signals()
                if self._first_ready is not None:
                    self._start_others_once_first_runs()
                for seat in self.seats:
                    self._check(seat)
                time.sleep(TICK)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close_first_ready()
            self._close_listener()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        codes = [s.last_code for s in self.seats if s.last_code is not None]
        code = self._fatal if self._fatal is not None else \
            (0 if all(c == 0 for c in codes) else 1)
        log.info("esb supervisor stopped", exit_code=code)
        return code

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)  # handled by the loop: no work in a signal handler

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                if not self._stopping:
                    log.info("stopping: workers drain in-flight work",
                             signal=signal.Signals(sig).name)
                self._stop_all(sig)
            else:
                self._forward(sig)

    def _stop_all(self, sig: int = signal.SIGTERM) -> None:
        self._stopping = True
        # No more workers will start: without the supervisor's copy the address is free once
        # the last worker closed its socket (a shared one closes with the last worker), so
        # connections are refused, not left hanging.
        self._close_listener()
        self._forward(sig)

    def _forward(self, sig: int) -> None:
        for seat in self.seats:
            if seat.proc is not None and seat.proc.poll() is None:
                seat.proc.send_signal(sig)

    # -- workers -----------------------------------------------------------------------------

    def _start(self, seat: _Seat, ready_fd: int | None = None) -> None:
        assert self._listener is not None
        env = {**os.environ, METRICS_DIR_ENV: self._metrics_dir}
        listen_fd = self._listener.fileno()
        command = [sys.executable, "-m", "esb.bus.cli.main", "run",
                   "--config", str(self.config_path), "--workers", str(len(self.seats)),
                   "--listen-fd", str(listen_fd), "--worker-index", str(seat.index),
                   "--listen", self.loaded.config.http.listen]
        fds = [listen_fd]
        if ready_fd is not None:
            command += ["--ready-fd", str(ready_fd)]
            fds.append(ready_fd)
        seat.proc = subprocess.Popen(command, env=env, pass_fds=fds)
        seat.started = time.monotonic()
        seat.restart_at = None
        log.info("worker started", worker=seat.index, pid=seat.proc.pid)

    def _start_first(self) -> None:
        """Start worker 1 with a pipe it writes to once it is running."""
        if len(self.seats) == 1:
            self._start(self.seats[0])
            return
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        self._first_ready = read_end
        self._first_deadline = time.monotonic() + FIRST_READY_TIMEOUT
        try:
            self._start(self.seats[0], ready_fd=write_end)
        finally:
            os.close(write_end)  # the worker has its copy: EOF when it exits unannounced

    def _start_others_once_first_runs(self) -> None:
        assert self._first_ready is not None
        first = self.seats[0]
        try:
            answer: bytes | None = os.read(self._first_ready, 1)  # b"r" running, b"" exited
        except BlockingIOError:
            if time.monotonic() < self._first_deadline:
                return
            answer = None
        self._close_first_ready()
        if answer == b"" and first.proc is not None:
            # Exiting without having run: let the crash policy judge it before going on (a
            # worker that cannot start stops the daemon; the others need not start at all).
            with contextlib.suppress(subprocess.TimeoutExpired):
                first.proc.wait(1)
            self._check(first)
        if self._stopping:
            return
        if answer != b"r":
            log.warning("worker 1 is not running: starting the others anyway")
        for seat in self.seats[1:]:
            self._start(seat)

    def _close_first_ready(self) -> None:
        if self._first_ready is not None:
            os.close(self._first_ready)
            self._first_ready = None

    def _check(self, seat: _Seat) -> None:
        if seat.proc is None:
            if not self._stopping and seat.restart_at is not None \
                    and time.monotonic() >= seat.restart_at:
                self._start(seat)
            return
        code = seat.proc.poll()
        if code is None:
            return
        pid, seat.proc = seat.proc.pid, None
        if self._stopping and code in (-signal.SIGTERM, -signal.SIGINT):
            # Stopped by the signal forwarded to it before its daemon had installed handlers
            # (still loading its routes): it had taken no work, so that is a clean stop.
            code = 0
        seat.last_code = code
        # Its live gauges leave the shared metrics (its counters stay: the daemon's totals do
        # not go down when a worker is replaced).
        mark_process_dead(pid, self._metrics_dir)
        # It serves no more: its readiness must not speak for the daemon (a kill -9 leaves it).
        WorkerBoard(self._metrics_dir).withdraw(seat.index)
        uptime = round(time.monotonic() - seat.started, 1)
        if self._stopping:
            log.info("worker exited", worker=seat.index, pid=pid, exit_code=code,
                     uptime_s=uptime)
            return
        early = uptime < EARLY_EXIT
        if early and code > 0:
            log.error("worker exited while starting: stopping the others", worker=seat.index,
                      pid=pid, exit_code=code, uptime_s=uptime)
            self._fatal = code
            self._stop_all()
            return
        seat.quick_deaths = seat.quick_deaths + 1 if early else 0
        delay = min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** seat.quick_deaths)
        seat.restart_at = time.monotonic() + delay
        log.warning("worker exited unexpectedly: restarting", worker=seat.index, pid=pid,
                    exit_code=code, uptime_s=uptime, restart_in_s=delay)

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def supervise(loaded: Loaded, config_path: Path, count: int) -> int:
    """Run ``count`` worker processes for ``loaded`` (read from ``config_path``)."""
    return Supervisor(loaded, config_path, count).run()
