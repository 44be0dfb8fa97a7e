"""Deadlines: one sweeper enforces the time limits of many concurrent calls."""

from __future__ import annotations

import asyncio
import time

import pytest

from esb.bus.deadline import Deadlines


async def test_a_call_within_its_limit_returns_its_result() -> None:
    d = Deadlines(0.05)

    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    assert await d.run(answer(), 1.0) == 42
    assert len(d) == 0


async def test_an_overdue_call_raises_timeout_within_the_resolution() -> None:
    d = Deadlines(0.05)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await d.run(asyncio.sleep(10), 0.1)
    took = time.monotonic() - started
    assert 0.1 <= took < 0.5
    assert len(d) == 0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_many_calls_each_get_their_own_outcome() -> None:
    d = Deadlines(0.02)

    async def call(i: int) -> str:
        try:
            return await d.run(asyncio.sleep(0.01 if i % 2 else 5, result=f"ok{i}"), 0.1)
        except TimeoutError:
            return f"timeout{i}"

    out = await asyncio.gather(*(call(i) for i in range(40)))
    assert out == [f"ok{i}" if i % 2 else f"timeout{i}" for i in range(40)]
    assert len(d) == 0


async def test_a_cancel_from_elsewhere_is_not_turned_into_a_timeout() -> None:
    d = Deadlines(0.05)
    task = asyncio.create_task(d.run(asyncio.sleep(10), 5.0))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(d) == 0


async def test_a_call_that_swallows_the_cancel_keeps_its_result() -> None:
    d = Deadlines(0.02)

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "finished anyway"
        return "never"

    async def outer() -> tuple[str, int]:
        result = await d.run(stubborn(), 0.05)
        return result, asyncio.current_task().cancelling()  # type: ignore[union-attr]

    assert await outer() == ("finished anyway", 0)


async def test_the_sweeper_stops_when_idle_and_starts_again() -> None:
    d = Deadlines(0.02)
    await d.run(asyncio.sleep(0), 1.0)
    await asyncio.sleep(0.1)
    assert d._sweeper is None
    with pytest.raises(TimeoutError):
        await d.run(asyncio.sleep(5), 0.03)


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Deadlines(0)


def test_one_instance_serves_one_loop_after_another() -> None:
    """The loop is looked up once and kept; used under a new loop, it is looked up again
    (the tasks and the limit are that loop's)."""
    d = Deadlines(0.02)

    async def limited() -> None:
        assert await d.run(asyncio.sleep(0, result=1), 1.0) == 1
        with pytest.raises(TimeoutError):
            await d.run(asyncio.sleep(5), 0.05)

    for _ in range(2):
        asyncio.run(limited())
    assert len(d) == 0
