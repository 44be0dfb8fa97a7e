"""A commit the broker did not answer (a node died in the middle of it) may have kept the
record that an idempotency key was taken and not the envelope's copy: the ingress publishes
the copies again and the record after them, so a repeat of the key is never answered as a
duplicate of a copy that does not exist. Without a record (a split without a key) nothing
claims the envelope was taken: the error goes to the sender, whose retry publishes it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from esbtest.waiting import until

from esb.bus.broker.base import destination_address
from esb.bus.broker.embedded import EmbeddedBus
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable, CommitUncertain
from esb.bus.routing.dispatch import plan
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.runtime import ingress as ingress_module
from esb.bus.runtime.ingress import Ingress, RouterHolder
from esb.bus.runtime.metrics import Metrics

ROUTES = """
routes:
  - {name: orders, from: [shop], match: {type: [order]}, to: [out]}
"""
RECORD = ("esb.idempotency", b'{"kind": "done"}')


class FlakyBus(EmbeddedBus):
    """Commits go unanswered ``unanswered`` times (nothing is kept); plain publishes fail
    ``refusals`` times. Logs every publish that went through, in order."""

    def __init__(self, unanswered: int = 1, refusals: int = 0) -> None:
        super().__init__()
        self.unanswered = unanswered
        self.refusals = refusals
        self.log: list[str] = []

    async def publish(self, address: str, envelope: Envelope) -> None:
        if self.refusals:
            self.refusals -= 1
            raise BusUnavailable("the bus is not connected")
        await super().publish(address, envelope)
        self.log.append(f"copy to {address}")

    async def publish_atomically(self, publishes: Sequence[tuple[str, Envelope]],
                                 records: Sequence[tuple[str, bytes]] = ()) -> None:
        if self.unanswered:
            self.unanswered -= 1
            raise CommitUncertain("the commit was not answered")
        await super().publish_atomically(publishes, records)
        self.log += [f"copy to {a}" for a, _ in publishes] + [f"record to {q}"
                                                               for q, _ in records]

    async def publish_in_order(self, publishes: Sequence[tuple[str, Envelope]],
                               records: Sequence[tuple[str, bytes]] = ()) -> None:
        await super().publish_in_order(publishes, records)  # copies logged by publish()
        self.log += [f"record to {q}" for q, _ in records]


async def ingress_on(bus: FlakyBus, tmp_path: Path) -> Ingress:
    router = compile_routes(parse_route_files({"r.yaml": ROUTES}, base=tmp_path),
                            sources={"shop"}, destinations={"out"}, base_dir=tmp_path)
    await bus.start(["out"])
    return Ingress(bus, RouterHolder(router), Metrics(), "i1")


async def test_an_unanswered_commit_with_a_key_record_publishes_the_copy_then_the_record(
        tmp_path: Path) -> None:
    bus = FlakyBus(unanswered=1)
    ingress = await ingress_on(bus, tmp_path)
    env = Envelope(source="shop", type="order", data={"n": 1})
    accepted = await ingress.accept(env, "shop", seal=lambda accepted: RECORD)
    assert accepted.id == env.id
    assert bus.log == [f"copy to {destination_address('out')}", "record to esb.idempotency"]
    assert [e.id for e in await bus.browse(destination_address("out"), 9)] == [env.id]


async def test_the_sender_is_told_to_retry_while_the_securing_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingress_module, "SECURE_WAIT", 0.2)
    bus = FlakyBus(unanswered=1, refusals=2)  # the copy goes through on the third try
    ingress = await ingress_on(bus, tmp_path)
    env = Envelope(source="shop", type="order", data={"n": 2})
    with pytest.raises(BusUnavailable, match="did not confirm the envelope in time"):
        await ingress.accept(env, "shop", seal=lambda accepted: RECORD)
    assert await until(lambda: len(bus.log) >= 2), bus.log
    await asyncio.sleep(0.1)  # and nothing more comes
    assert bus.log == [f"copy to {destination_address('out')}", "record to esb.idempotency"]


async def test_an_unanswered_commit_without_a_record_goes_to_the_sender(
        tmp_path: Path) -> None:
    bus = FlakyBus(unanswered=1)
    ingress = await ingress_on(bus, tmp_path)
    split = Envelope(source="shop", type="order", data={"n": 3})
    planned = replace(plan(ingress.routes.current, split, "shop", instance="i1"), parts=2)
    with pytest.raises(CommitUncertain):
        await ingress.publish(planned)
    assert bus.log == []
