"""The in-process idempotency cache (:class:`esb.bus.runtime.idempotency.IdempotencyCache`)."""

from __future__ import annotations

import pytest
from esbtest.cycles import CyclesLeft

from esb.bus.runtime.idempotency import IdempotencyCache


class Refused(Exception):
    pass


async def test_a_failed_first_attempt_is_forgotten_and_leaves_no_cycle() -> None:
    """The retry counts as new; and nothing of the failure (its payload included) waits for
    the cyclic collector: the attempt's future held the error, whose traceback held the frame
    that held the future."""
    cache = IdempotencyCache()

    async def fail() -> object:
        payload = b"x" * 100_000  # what a message's frames would hold
        raise Refused(len(payload))

    async def succeed() -> object:
        return "accepted"

    with pytest.raises(Refused):
        await cache.run("k", fail)
    with CyclesLeft() as cycles:
        for _ in range(20):
            with pytest.raises(Refused):
                await cache.run("k", fail)
    assert cycles.left == 0, f"{cycles.left} objects in reference cycles after 20 failed attempts"
    assert await cache.run("k", succeed) == ("accepted", False)
    assert await cache.run("k", succeed) == ("accepted", True)
