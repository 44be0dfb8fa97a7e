"""Waiting for something a daemon does asynchronously, without sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_until(check: Callable[[], Any], what: str, *, timeout: float = 20,
               interval: float = 0.1, daemon: Any = None) -> Any:
    """Poll ``check`` until it returns something truthy and return that; on timeout fail
    naming ``what`` (with ``daemon``'s log when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    log = f"\n{daemon.log()}" if daemon is not None else ""
    raise AssertionError(f"timed out waiting for {what}{log}")


def wait_progress(count: Callable[[], int], target: int, what: str, *, stall: float = 60,
                  timeout: float = 600, interval: float = 0.1) -> int:
    """Poll ``count`` until it reaches ``target``; fail naming ``what`` when it has not grown
    for ``stall`` seconds (or after ``timeout`` overall). For "it came back and goes on":
    a loaded machine only makes it slower, a real stall still fails within ``stall``."""
    start = last_change = time.monotonic()
    seen = count()
    while seen < target:
        now = time.monotonic()
        if now - last_change > stall or now - start > timeout:
            raise AssertionError(f"timed out waiting for {what}: {seen} of {target}, none "
                                 f"for {now - last_change:.0f}s")
        time.sleep(interval)
        now_seen = count()
        if now_seen != seen:
            seen, last_change = now_seen, time.monotonic()
    return seen


async def until(check: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> bool:
    """In a coroutine: poll ``check`` until it is truthy (True) or ``timeout`` passed (its
    last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(interval)
    return bool(check())


def settled(daemon: Any) -> bool:
    """Whether ``daemon`` has nothing left to deliver: every destination's queue is empty,
    nothing is in flight, no aggregate holds an open group and nothing waits out a retry
    backoff. Once it is, what the destinations got is all they will get from what was sent
    so far — wait for this instead of a while for something that must not come."""
    st = daemon.admin("GET", "/admin/status").json()
    # (an aggregate has no deliveries in flight: it holds its members un-acked in open groups)
    return st["queues"].get("retrying") == 0 and all(
        dest["queue"] == 0 and dest.get("in_flight", 0) == 0 and not dest.get("open_groups")
        for dest in st["destinations"].values())
