"""Time limits for many concurrent calls with one timer, instead of one timer per call.

``asyncio.timeout`` schedules and cancels a timer handle for every use — about 6 µs on uvloop,
measured, which a delivery worker pays once per message. :class:`Deadlines` keeps each limited
call's task and due time in a dict; one sweeper task wakes every ``resolution`` seconds while
calls are in progress and cancels the overdue ones, and the cancelled call raises
:class:`TimeoutError` as ``asyncio.timeout`` would. A limit therefore fires between ``seconds``
and ``seconds + resolution`` after the call started.

Cancellation from elsewhere (a shutdown) still propagates as :class:`asyncio.CancelledError`,
also when it coincides with a deadline (the same rule as ``asyncio.timeout``: the timeout
only wins when it was the task's only cancel request).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Deadlines:
    def __init__(self, resolution: float) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self.resolution = resolution
        self._due: dict[asyncio.Task[object], float] = {}
        self._fired: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0  # the thread whose running loop ``_loop`` is
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Calls in progress."""
        return len(self._due)

    async def run(self, call: Awaitable[T], seconds: float) -> T:
        """Await ``call``; raise :class:`TimeoutError` if it is still running ``seconds`` (plus
        up to ``resolution``) later. Must be awaited from a task, one call per task at a
        time."""
        # The loop is asked for once per thread: on Python 3.11 every get_running_loop()
        # (also inside a current_task() without its loop) is a getpid system call, and this
        # runs for every publish, delivery and read. Used again under a new loop, the kept
        # one has no current task, so the lookup is redone; from another thread (whose loop
        # is another), it is redone too.
        loop = self._loop
        task = None
        if loop is not None and self._thread == threading.get_ident():
            task = asyncio.current_task(loop)
        if task is None:
            loop = self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
            task = asyncio.current_task(loop)
            if task is None:  # pragma: no cover - every esb call runs in a task
                raise RuntimeError("Deadlines.run needs a running task")
        self._due[task] = loop.time() + seconds
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="esb deadline sweeper")
        try:
            result = await call
        except asyncio.CancelledError:
            if task in self._fired and task.uncancel() == 0:
                raise TimeoutError(f"no result within {seconds:g}s") from None
            raise
        finally:
            self._due.pop(task, None)
            fired = task in self._fired
            self._fired.discard(task)
        if fired:  # cancelled just as the call returned: the result stands, undo the request
            task.uncancel()
        return result

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._due:
                await asyncio.sleep(self.resolution)
                now = loop.time()
                for task, due in list(self._due.items()):
                    if due <= now and task not in self._fired:
                        self._fired.add(task)
                        task.cancel()
        finally:
            self._sweeper = None
