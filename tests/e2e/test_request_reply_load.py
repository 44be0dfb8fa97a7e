"""A thousand callers waiting at once on one daemon, over HTTP, on the real RabbitMQ (§12):
each gets its own answer, none is lost or mixed up, the daemon's memory stays bounded and it
keeps answering ``/healthz`` meanwhile. The in-process twin is
tests/runtime/test_pending_calls.py (``a_thousand_callers_wait_at_once``)."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from esbtest.waiting import until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esb.adapters.testing.peers import PeerServer

CALLERS = 1000
#: Calls the daemon makes to the backend at once; the other requests wait on the queue.
CONCURRENCY = 100
#: Far more than CALLERS waiting calls need — a future, a timer and an open HTTP connection
#: each, measured at ~40 KiB a caller (the test prints it) — yet a leak or a per-caller
#: buffer of some size would cross it.
RSS_GROWTH_BOUND = 128 * 1024 * 1024


class GatedBackend:
    """A slow-ish legacy lookup: every call waits until the test opens the gate, then takes a
    few milliseconds more; it echoes the id and nonce it was asked for."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.gate: asyncio.Event | None = None
        self.held = 0
        self.served = 0
        self.lock = threading.Lock()

    def open(self) -> None:
        assert self.loop is not None and self.gate is not None
        self.loop.call_soon_threadsafe(self.gate.set)

    def app(self) -> Starlette:
        async def customer(request: Request) -> Response:
            if self.gate is None:  # made on the peer's own loop, by its first request
                self.loop, self.gate = asyncio.get_running_loop(), asyncio.Event()
            cid, nonce = int(request.path_params["id"]), request.path_params["nonce"]
            if nonce != "warm-up":
                with self.lock:
                    self.held += 1
                await self.gate.wait()
                with self.lock:
                    self.held -= 1
            await asyncio.sleep(0.005)
            with self.lock:
                self.served += 1
            return JSONResponse({"id": cid, "nonce": nonce, "name": f"Customer {cid}"})

        return Starlette(routes=[Route("/customers/{id}/{nonce}", customer)])


@pytest.fixture
def backend() -> Iterator[tuple[GatedBackend, str]]:
    b = GatedBackend()
    with PeerServer(b.app()) as peer:
        yield b, peer.url


def rss_and_threads(pid: int) -> tuple[int, int]:
    """Resident memory (bytes) and threads of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    threads = re.search(r"^Threads:\s+(\d+)$", status, re.M)
    assert found and threads, status
    return int(found.group(1)) * 1024, int(threads.group(1))


def waiting_callers(metrics: str) -> float:
    found = re.search(r"^esb_waiting_callers (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else -1.0


def test_a_thousand_http_callers_wait_at_once_and_each_gets_its_own_answer(
        rabbit: Any, daemon_factory: Any, backend: tuple[GatedBackend, str]) -> None:
    b, url = backend
    config = {
        "bus": rabbit.bus("crm"),
        "http": {"max_connections": CALLERS + 100},
        "sources": {"api": {"adapter": "rest", "path": "/api/customers/{id}/{nonce}",
                            "methods": ["GET"], "params": {"id": "integer"}}},
        "destinations": {"crm": {
            "adapter": "rest", "method": "GET", "url": url + "/customers/{data.id}/{data.nonce}",
            "delivery": {"timeout": "60s", "concurrency": CONCURRENCY, "breaker": False}}},
    }
    routes = {"r.yaml": {"routes": [{"name": "lookup", "from": ["api"], "to": "crm",
                                     "reply": {"timeout": "60s"}}]}}
    d = daemon_factory(config, routes).start()
    assert d.proc is not None
    warm = d.http.get(f"{d.url}/api/customers/0/warm-up")
    assert warm.status_code == 200, warm.text
    base, base_threads = rss_and_threads(d.proc.pid)

    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=CALLERS + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=120, trust_env=False) as client, \
                httpx.AsyncClient(timeout=30, trust_env=False) as probe:
            nonces = [uuid.uuid4().hex for _ in range(CALLERS)]
            tasks = [asyncio.create_task(client.get(f"{d.url}/api/customers/{i}/{n}"))
                     for i, n in enumerate(nonces)]

            async def all_waiting() -> bool:
                text = (await probe.get(f"{d.url}/metrics")).text
                return waiting_callers(text) == CALLERS

            waited = False
            for _ in range(600):  # a minute at most; each poll also proves /metrics answers
                if await all_waiting():
                    waited = True
                    break
                await asyncio.sleep(0.1)
            assert waited, f"not every caller is waiting:\n{d.log()}"
            # the backend holds what the bulkhead lets through; the rest wait on the queue
            assert await until(lambda: b.held == CONCURRENCY, timeout=30), b.held
            health = await probe.get(f"{d.url}/healthz")
            during = rss_and_threads(d.proc.pid)  # type: ignore[union-attr]
            b.open()
            answers = await asyncio.gather(*tasks)
            after = (await probe.get(f"{d.url}/metrics")).text
            return {"nonces": nonces, "answers": answers, "health": health,
                    "during": during, "after": after}

    out = asyncio.run(run())
    assert out["health"].status_code == 200
    answers: list[httpx.Response] = out["answers"]
    assert [r.status_code for r in answers] == [200] * CALLERS
    # each caller got the answer to its own question: its id and its own nonce
    assert [r.json() for r in answers] == [
        {"id": i, "nonce": n, "name": f"Customer {i}"} for i, n in enumerate(out["nonces"])]
    assert b.served == CALLERS + 1  # each called once (plus the warm-up), none repeated
    assert waiting_callers(out["after"]) == 0
    during, threads = out["during"]
    growth = during - base
    print(f"\ndaemon RSS {base / 2**20:.0f} MiB idle, {during / 2**20:.0f} MiB with "
          f"{CALLERS} callers waiting ({growth / CALLERS / 1024:.1f} KiB each); threads "
          f"{base_threads} idle, {threads} waiting")
    assert growth < RSS_GROWTH_BOUND
    assert threads < base_threads + 20  # no thread per caller
