"""The sandbox exchange awaited on the event loop (``XsltProcess.run_async``, what the daemon
uses): the same answers and the same errors as the blocking exchange, the loop free while a
transform runs, one request in flight, and a thread's transforms taking turns with the loop's."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from esbtest.hostile import GROW, SPIN, XSL

from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError
from esb.transformers.chain import Chain, build_chain
from esb.transformers.xslt_process import XsltProcess, _frame, _framed

ECHO = XSL + '<xsl:template match="/"><ok><xsl:value-of select="/r/@n"/></ok></xsl:template>' \
    "</xsl:stylesheet>"


def env(data: str) -> Envelope:
    return Envelope(source="s", type="t", datacontenttype="application/xml", data=data)


def chain(tmp_path: Path, name: str, text: str, **options: str) -> Chain:
    (tmp_path / f"{name}.xsl").write_text(text)
    return build_chain([{"xslt": {"stylesheet": f"{name}.xsl", **options}}], base_dir=tmp_path)


def test_frames_read_as_the_child_writes_them() -> None:
    buf = bytearray(_frame(b"abc") + _frame(b"") + _frame(b"x" * 70_000)[:100])
    assert _framed(buf) == b"abc"
    assert _framed(buf) == b""
    assert _framed(buf) is None and len(buf) == 100  # not all here yet


async def test_concurrent_transforms_each_get_their_own_answer(tmp_path: Path) -> None:
    echo = chain(tmp_path, "echo", ECHO)
    # one large input: written to the pipe as the child takes it
    big = "<r n='big'>" + "<i/>" * 40_000 + "</r>"
    inputs = [f"<r n='{i}'/>" for i in range(40)] + [big]
    outs = await asyncio.gather(*(echo.run(env(d)) for d in inputs))
    assert [o.data.rsplit("<ok>", 1)[1] for o in outs] == \
        [f"{i}</ok>\n" for i in range(40)] + ["big</ok>\n"]


async def test_a_runaway_is_stopped_on_time_and_the_loop_serves_meanwhile(
        tmp_path: Path) -> None:
    spin = chain(tmp_path, "spin", SPIN, timeout="1s", max_memory="64MiB")
    echo = chain(tmp_path, "echo", ECHO)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    with pytest.raises(TransformError, match=r"stopped: the stylesheet ran longer than its "
                                             r"timeout \(1 s\)"):
        await spin.run(env("<r><i/></r>"))
    ticker.cancel()
    assert 0.9 < time.monotonic() - started < 10
    assert ticks > 20  # the loop was not blocked by the transform
    # queued behind the runaway and after it: a fresh process answers
    assert (await echo.run(env("<r n='7'/>"))).data.endswith("<ok>7</ok>\n")


async def test_requests_written_behind_a_runaway_are_answered_by_the_next_process(
        tmp_path: Path) -> None:
    spin = chain(tmp_path, "spin", SPIN, timeout="1s", max_memory="64MiB")
    echo = chain(tmp_path, "echo", ECHO)
    outs = await asyncio.gather(spin.run(env("<r><i/></r>")),
                                *(echo.run(env(f"<r n='{i}'/>")) for i in range(6)),
                                return_exceptions=True)
    assert isinstance(outs[0], TransformError) and "timeout (1 s)" in str(outs[0])
    assert [o.data.rsplit("<ok>", 1)[1] for o in outs[1:]] == [f"{i}</ok>\n" for i in range(6)]


async def test_a_transform_past_its_memory_fails_as_before(tmp_path: Path) -> None:
    grow = chain(tmp_path, "grow", GROW, timeout="60s", max_memory="32MiB")
    echo = chain(tmp_path, "echo", ECHO)
    for _ in range(2):  # and again, in the process that replaced the first
        with pytest.raises(TransformError, match=r"stopped: .*max_memory \(33554432"):
            await grow.run(env("<r/>"))
        assert (await echo.run(env("<r n='7'/>"))).data.endswith("<ok>7</ok>\n")


async def test_a_killed_sandbox_process_fails_the_transform_and_a_new_one_starts(
        tmp_path: Path) -> None:
    proc = XsltProcess()
    try:
        spin = build_chain([{"xslt": {"stylesheet": "spin.xsl", "timeout": "30s"}}],
                           base_dir=_write(tmp_path, "spin", SPIN))
        step = spin._steps[0][1]
        step.process = proc  # type: ignore[attr-defined]
        task = asyncio.create_task(spin.run(env("<r><i/></r>")))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if proc._flight and proc._reading:  # written, its answer awaited
                break
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(TransformError, match=r"stopped: the transform process ended "
                                                 r"\(signal SIGKILL\)"):
            await task
        echo = build_chain([{"xslt": "echo.xsl"}], base_dir=_write(tmp_path, "echo", ECHO))
        echo._steps[0][1].process = proc  # type: ignore[attr-defined]
        assert (await echo.run(env("<r n='8'/>"))).data.endswith("<ok>8</ok>\n")
    finally:
        proc.close()


async def test_the_requests_of_one_turn_reach_the_child_in_one_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = XsltProcess()
    try:
        echo = chain(tmp_path, "echo", ECHO)
        echo._steps[0][1].process = proc  # type: ignore[attr-defined]
        proc.start()
        writes: list[int] = []
        write = os.write

        def counted(fd: int, data: bytes) -> int:
            if proc._send is not None and fd == proc._send.fileno():
                writes.append(len(data))
            return write(fd, data)

        monkeypatch.setattr(os, "write", counted)
        # four deliveries in one turn of the loop: one write wakes the child for all four
        outs = await asyncio.gather(*(echo.run(env(f"<r n='{i}'/>")) for i in range(4)))
        assert [o.data.rsplit("<ok>", 1)[1] for o in outs] == [f"{i}</ok>\n" for i in range(4)]
        assert len(writes) == 1
        # past the pipeline's depth, the rest follow as answers come back: all answered
        outs = await asyncio.gather(*(echo.run(env(f"<r n='{i}'/>")) for i in range(10)))
        assert [o.data.rsplit("<ok>", 1)[1] for o in outs] == [f"{i}</ok>\n" for i in range(10)]
    finally:
        proc.close()


async def test_a_cancelled_caller_does_not_leave_its_answer_to_the_next(
        tmp_path: Path) -> None:
    proc = XsltProcess()
    try:
        echo = chain(tmp_path, "echo", ECHO)
        # ~10^7 node visits: a second or more, however fast the machine
        slow = chain(tmp_path, "slow", ECHO.replace(
            '<ok>', '<ok><xsl:for-each select="(//node())[position() &lt; 5000]">'
                    '<xsl:for-each select="//node()"/></xsl:for-each>'), timeout="60s")
        for c in (echo, slow):
            c._steps[0][1].process = proc  # type: ignore[attr-defined]
        big = "<r n='slow'>" + "<i/>" * 2000 + "</r>"
        first = asyncio.create_task(slow.run(env(big)))
        for _ in range(3000):  # until the slow one is written and its answer awaited
            await asyncio.sleep(0.01)
            if proc._flight and proc._reading:
                break
        waiting = asyncio.create_task(echo.run(env("<r n='gone'/>")))
        await asyncio.sleep(0)  # queued (or written) behind the slow one
        first.cancel()  # in flight: its exchange finishes, its answer is dropped
        waiting.cancel()  # behind it: its answer, if any, is dropped too
        after = await echo.run(env("<r n='mine'/>"))
        assert after.data.endswith("<ok>mine</ok>\n")
        assert first.cancelled() and waiting.cancelled()
    finally:
        proc.close()


async def test_a_threads_transforms_take_turns_with_the_loops(tmp_path: Path) -> None:
    echo = chain(tmp_path, "echo", ECHO)
    got: list[str] = []

    def in_thread() -> None:
        for i in range(30):
            got.append(echo(env(f"<r n='t{i}'/>")).data.rsplit("<ok>", 1)[1])

    thread = threading.Thread(target=in_thread)
    thread.start()
    outs = await asyncio.gather(*(echo.run(env(f"<r n='l{i}'/>")) for i in range(30)))
    await asyncio.to_thread(thread.join)
    assert got == [f"t{i}</ok>\n" for i in range(30)]
    assert [o.data.rsplit("<ok>", 1)[1] for o in outs] == [f"l{i}</ok>\n" for i in range(30)]


async def test_the_blocking_exchange_on_the_loop_is_refused_while_the_loop_holds_it(
        tmp_path: Path) -> None:
    echo = chain(tmp_path, "echo", ECHO)
    spin = chain(tmp_path, "spin", SPIN, timeout="2s")
    task = asyncio.create_task(spin.run(env("<r><i/></r>")))
    await asyncio.sleep(0.05)
    # it would wait for a lock only this loop can let go of
    with pytest.raises(TransformError, match="await run_async"):
        echo(env("<r n='1'/>"))
    with pytest.raises(TransformError):
        await task


def test_a_refused_input_is_the_same_error_awaited(tmp_path: Path) -> None:
    echo = chain(tmp_path, "echo", ECHO)
    with pytest.raises(TransformError, match="input refused") as blocking:
        echo(env("<r"))
    with pytest.raises(TransformError, match="input refused") as awaited:
        asyncio.run(echo.run(env("<r")))
    assert str(awaited.value) == str(blocking.value)


def test_a_closed_loops_leftover_request_does_not_stall_the_next_loops(
        tmp_path: Path) -> None:
    """A loop closed while its request waited behind a thread's transform leaves that request
    queued; a next loop's request, sent while another thread waits its turn, is answered."""
    proc = XsltProcess()
    spin = chain(tmp_path, "spin", SPIN, timeout="1s", max_memory="64MiB")
    echo = chain(tmp_path, "echo", ECHO)
    for c in (spin, echo):
        c._steps[0][1].process = proc  # type: ignore[attr-defined]
    proc.start()

    def runaway() -> None:
        with pytest.raises(TransformError):
            spin(env("<r><i/></r>"))

    threads = [threading.Thread(target=runaway)]
    try:
        threads[0].start()  # holds the sandbox for its timeout (1 s)
        while not proc._lock.locked():
            time.sleep(0.001)

        async def gives_up() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(echo.run(env("<r n='a'/>")), 0.2)

        asyncio.run(gives_up())  # its loop is closed, its request still queued
        assert proc._queue
        threads.append(threading.Thread(target=lambda: echo(env("<r n='t'/>"))))
        threads[1].start()
        while proc._threads != 1:  # waiting for the sandbox
            time.sleep(0.001)

        async def next_loop() -> str:
            return (await asyncio.wait_for(echo.run(env("<r n='b'/>")), 15)).data

        assert asyncio.run(next_loop()).endswith("<ok>b</ok>\n")
    finally:
        for t in threads:
            t.join()
        proc.close()


async def test_an_error_while_sending_reaches_the_callers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = XsltProcess()
    echo = chain(tmp_path, "echo", ECHO)
    echo._steps[0][1].process = proc  # type: ignore[attr-defined]

    def broken() -> None:
        raise OSError("no pipe")

    monkeypatch.setattr(proc, "_pump", broken)
    outs = await asyncio.wait_for(asyncio.gather(
        *(echo.run(env(f"<r n='{i}'/>")) for i in range(3)), return_exceptions=True), 5)
    assert all(isinstance(o, TransformError) and "OSError: no pipe" in str(o) for o in outs)
    assert not proc._queue


def _write(folder: Path, name: str, text: str) -> Path:
    (folder / f"{name}.xsl").write_text(text)
    return folder
