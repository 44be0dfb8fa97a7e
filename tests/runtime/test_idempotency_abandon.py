"""A claim whose abandon record could not be appended (its link was lost) does not block the
key for ``claim_ttl``: the abandon is appended once the link is back. On the real RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import Any

from esb.bus.errors import BusUnavailable
from esb.bus.runtime.idempotency_log import IdempotencyLog


async def wait_for(check: Any, what: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_an_abandon_lost_with_its_link_is_sent_after_the_reconnect(rabbit: Any) -> None:
    logs = [IdempotencyLog(rabbit.url, rabbit.prefix, name, 60, lambda *_: None,
                           claim_ttl=300) for name in ("a", "b")]
    a, b = logs
    for log in logs:
        await log.start()
    try:
        await wait_for(lambda: a.ready and b.ready, "both logs ready")
        won = await a.claim("k", "fp")
        assert won.kind == "won"

        publish = a._publisher.publish
        refused: list[bytes] = []

        async def lost(exchange: str, queue: str, body: bytes, *args: Any, **kw: Any) -> None:
            refused.append(body)
            raise BusUnavailable("connection lost")

        a._publisher.publish = lost  # type: ignore[method-assign]
        a.abandon("k", won.nonce)
        await wait_for(lambda: refused, "the abandon tried")
        assert (await b.claim("k", "fp")).kind == "busy"  # the claim stands (ttl: 300 s)

        a._publisher.publish = publish  # type: ignore[method-assign]
        a._link.drop()  # the link comes back: the abandon is appended
        await wait_for(lambda: a.ready, "a reconnected")
        verdict = None
        for _ in range(50):
            verdict = await b.claim("k", "fp")
            if verdict.kind == "won":
                break
            await asyncio.sleep(0.2)
        assert verdict is not None and verdict.kind == "won", verdict
    finally:
        for log in logs:
            await log.close()
