"""Background tasks of long-lived components (the runtime's, and adapters' own loops): how
they are stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished: its cancellation is how it
    ends, anything else it raises is raised here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel every task in ``tasks``, wait until each has finished (dropping what they raise,
    their cancellation included: ``close`` must not fail on a crashed loop), then empty the
    list."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    tasks.clear()
