"""What a daemon does differently when it is one of the worker processes of
``esb run --workers N`` (see :mod:`esb.bus.runtime.supervisor`).

A worker is a normal :class:`~esb.bus.runtime.daemon.Daemon` (its own instance id, bus
connections, presence) except that it:

* serves HTTP on the address the supervisor bound and passed down (``--listen-fd``), on a
  listening socket of its own where the kernel balances ports (SO_REUSEPORT), and only once
  it has fully started, so no connection is taken by a half-started worker;
* records metrics in prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``) so
  any worker's ``/metrics`` shows the whole daemon;
* takes ``1/N`` of each destination's ``rate_limit``, so the configured rate holds for the
  daemon as a whole;
* tells the supervisor when it is running (``--ready-fd``, first worker only: the others start
  after it, so only one seeds an empty route store);
* stops (drains and exits) when its supervisor is gone, instead of serving on as an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from esb.bus.config.model import DeliveryConfig
from esb.bus.runtime.http import worker_listener

#: The directory prometheus_client's multiprocess mode keeps its files in.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class WorkerRole:
    """Worker ``index`` (1-based) of ``count``, serving on the inherited ``listen_fd``;
    ``ready_fd`` (when set) is a pipe to tell the supervisor it is running."""

    index: int
    count: int
    listen_fd: int
    metrics_dir: str
    ready_fd: int | None = None

    @classmethod
    def from_cli(cls, listen_fd: int, index: int, count: int,
                 ready_fd: int | None = None) -> WorkerRole:
        """The role given by the supervisor's hidden ``esb run`` options and environment.
        Raises ValueError when the process was not started by a supervisor."""
        metrics_dir = os.environ.get(METRICS_DIR_ENV)
        if not metrics_dir or not os.path.isdir(metrics_dir):
            raise ValueError(f"--listen-fd is for worker processes started by "
                             f"`esb run --workers N` ({METRICS_DIR_ENV} is not a directory)")
        return cls(index=index, count=max(1, count), listen_fd=listen_fd,
                   metrics_dir=metrics_dir, ready_fd=ready_fd)

    def listener(self) -> socket.socket:
        """This worker's listening socket, on the address the supervisor bound
        (:func:`~esb.bus.runtime.http.worker_listener`)."""
        sock = worker_listener(socket.socket(fileno=self.listen_fd))
        sock.setblocking(False)
        return sock

    def announce_ready(self) -> None:
        """Tell the supervisor this worker is running (once; a no-op without ``ready_fd``)."""
        fd, self.ready_fd = self.ready_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, b"r")
            with contextlib.suppress(OSError):
                os.close(fd)

    def share(self, delivery: DeliveryConfig) -> DeliveryConfig:
        """This worker's share of a destination's delivery settings: ``rate_limit / N`` (and
        ``rate_burst / N``, at least 1). Concurrency, breaker and the rest stay per worker. A
        ``fleet`` scope is shared out among all instances already (every worker is one)."""
        if delivery.rate_limit is None or self.count == 1 or delivery.scope == "fleet":
            return delivery
        burst = delivery.rate_burst
        return delivery.model_copy(update={
            "rate_limit": delivery.rate_limit / self.count,
            "rate_burst": None if burst is None else max(1, burst // self.count)})


async def watch_parent(on_orphaned: Callable[[], None], interval: float = 1.0) -> None:
    """Call ``on_orphaned`` once if this process's parent (the supervisor) goes away: the
    process is then re-parented and :func:`os.getppid` changes."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(interval)
    on_orphaned()
