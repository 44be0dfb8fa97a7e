"""``one-instance`` sources: the side's loop runs only while this instance holds its lease.

The runtime wraps such a side in :class:`OneInstance`: its HTTP routes are served here as
always, but ``start`` is called only once the lease is taken and ``stop`` as soon as it is lost
(or the daemon stops). Where the lease lives is a :class:`Leases`: the broker on RabbitMQ
(:mod:`esb.bus.broker.leases`), a lock file beside the embedded bus
(:mod:`esb.bus.runtime.local_leases`), memory in the adapter test kit.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog

from esb.adapters.spec import HttpRoute, Inbound, SourceState
from esb.bus.tasks import cancel_and_wait

log = structlog.get_logger("esb.singleton")


class Lease(Protocol):
    """The right to run one source, held by at most one instance at a time."""

    @property
    def held(self) -> bool: ...

    async def acquire(self) -> None:
        """Return once this instance holds the lease."""

    async def lost(self) -> None:
        """Return once this instance no longer holds it."""

    async def release(self) -> None:
        """Give it up now (idempotent)."""


class Leases(Protocol):
    """Leases and state documents shared by the instances of one deployment."""

    def lease(self, source: str) -> Lease: ...

    def state(self, source: str) -> SourceState: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class OneInstance:
    """An inbound side whose ``start``/``stop`` follow ``lease``."""

    def __init__(self, side: Inbound, lease: Lease, source: str, retry: float = 1.0) -> None:
        self.side = side
        self.lease = lease
        self.source = source
        self.retry = retry
        self.routes: list[HttpRoute] = side.routes
        self._task: asyncio.Task[None] | None = None
        #: Whether the side runs here now (started under the lease).
        self.running = False

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.create_task(self._run(), name=f"esb-lease-{self.source}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.lease.release()

    async def _run(self) -> None:
        while True:
            await self.lease.acquire()
            log.info("lease taken: the source runs on this instance", source=self.source)
            try:
                await self.side.start()
                self.running = True
                await self.lease.lost()
                log.warning("lease lost: the source stops on this instance",
                            source=self.source)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a side that cannot start gives the lease to another
                log.error("source failed to start under its lease; giving it up",
                          source=self.source, error=f"{type(exc).__name__}: {exc}")
                await self.lease.release()
                await asyncio.sleep(self.retry)
            finally:
                self.running = False
                with contextlib.suppress(Exception):
                    await self.side.stop()
