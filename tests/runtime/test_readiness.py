"""What ``/readyz`` answers: the first condition of this process that fails, then what the
other workers of the daemon posted on their board."""

from __future__ import annotations

import asyncio
from pathlib import Path

from esb.bus.runtime.readiness import Readiness
from esb.bus.runtime.worker_board import WorkerBoard


def test_the_first_failing_condition_is_the_reason() -> None:
    state = {"bus": True, "log": False}
    readiness = Readiness([("bus not connected", lambda: state["bus"]),
                           ("idempotency log not connected", lambda: state["log"])])
    assert readiness() == "idempotency log not connected"
    state["bus"] = False
    assert readiness() == "bus not connected"
    state.update(bus=True, log=True)
    assert readiness() is None


def test_a_worker_is_ready_only_when_every_posted_worker_is(tmp_path: Path) -> None:
    one, two = WorkerBoard(tmp_path, 1), WorkerBoard(tmp_path, 2)
    own = {"two": None}
    readiness = Readiness([("bus not connected", lambda: own["two"] is None)], two.others)
    assert readiness() is None  # worker 1 posted nothing: it serves nobody yet
    one.post("idempotency log not connected")
    assert readiness() == "worker 1: idempotency log not connected"
    assert readiness.own() is None  # what worker 2 itself posts stays its own state
    one.post(None)
    assert readiness() is None
    one.post("bus not connected")
    WorkerBoard(tmp_path).withdraw(1)  # the supervisor, for a worker that died
    assert readiness() is None


def test_a_worker_does_not_read_its_own_post(tmp_path: Path) -> None:
    one = WorkerBoard(tmp_path, 1)
    one.post("stopping")
    assert one.others() is None
    assert WorkerBoard(tmp_path, 2).others() == "worker 1: stopping"


async def test_posting_follows_the_state_and_withdraws_when_cancelled(tmp_path: Path) -> None:
    one, two = WorkerBoard(tmp_path, 1), WorkerBoard(tmp_path, 2)
    state: dict[str, str | None] = {"reason": "bus not connected"}
    task = asyncio.create_task(one.keep_posting(lambda: state["reason"], every=0.01))

    async def others_become(expected: str | None) -> None:
        for _ in range(500):
            if two.others() == expected:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"worker 2 never read {expected!r}: {two.others()!r}")

    await others_become("worker 1: bus not connected")
    state["reason"] = None
    await others_become(None)
    state["reason"] = "stopping"
    await others_become("worker 1: stopping")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert two.others() is None  # it serves no more: it has no say
