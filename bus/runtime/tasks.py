"""Background tasks of the runtime's long-lived components."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


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
