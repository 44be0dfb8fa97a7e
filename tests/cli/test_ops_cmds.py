"""`esb trace ID` and `esb instances` through click's CliRunner, against a real HTTP server
mounting the admin endpoints of admin_ops (MemoryTrace, embedded Presence)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import click
import pytest
from click.testing import CliRunner
from esbtest.asgi import serve_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from esb.bus.cli.main import Context
from esb.bus.cli.ops_cmds import details, register
from esb.bus.runtime.admin_ops import ops_admin_routes
from esb.bus.runtime.presence import Presence
from esb.bus.runtime.stats import StatsHistory
from esb.bus.runtime.trace import MemoryTrace

EID = "7f1c8a52-4a3e-4c55-9e3b-0a8e2f1d6b10"
ODD = "order/42 x"
RR = "3b0e6a57-51c3-4f0a-8d43-1c0f6e2a9d77"


def cli() -> click.Group:
    @click.group()
    def esb() -> None:
        """The esb group of main.py."""

    register(esb)
    return esb


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def invoke(obj: Context, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli(), list(args), obj=obj, catch_exceptions=False)
    out = "".join(line for line in result.output.splitlines(keepends=True)
                  if not LOG_LINE.match(line))
    return result.exit_code, out


def snapshot() -> dict[str, object]:
    return {"route_version": 5, "bus_connected": True,
            "destinations": {"erp": {"delivered": 12, "failed": 1, "dead_lettered": 0,
                                     "in_flight": 2, "breaker": "closed"}}}


@pytest.fixture
def daemon() -> Iterator[Context]:
    trace = MemoryTrace("host-1")
    trace.record(EID, "accepted", endpoint="shop", version=3)
    trace.record(EID, "routed", route="big-orders", version=3, destination="erp")
    trace.record(EID, "attempt", destination="erp", outcome="transient", status=503,
                 latency_ms=20.5, error="HTTP 503 Service   Unavailable")
    trace.record(EID, "retry-scheduled", destination="erp", attempt=1, retry_in=0.5)
    trace.record(EID, "delivered", destination="erp", status=200, latency_ms=3.25, attempt=2)
    trace.record(ODD, "unroutable", version=3)
    t0 = time.time() - 60
    trace.record(RR, "accepted", at=t0, endpoint="api", version=3)
    trace.record(RR, "routed", at=t0, route="lookup", version=3, destination="crm",
                 leg="request", timeout=2.0)
    trace.record(RR, "delivered", at=t0 + 0.0185, destination="crm", status=200,
                 latency_ms=13.5, attempt=1)
    trace.record(RR, "replied", at=t0 + 0.0269, destination="crm", status=200, outcome="ok",
                 latency_ms=17.25)
    trace.record(RR, "answered", at=t0 + 0.0271, route="lookup", destination="crm",
                 outcome="ok", status=200, latency_ms=26.9)
    presence = Presence(None, "esb", "host-1", snapshot)

    def guard(endpoint):  # type: ignore[no-untyped-def]
        async def guarded(request: Request) -> Response:
            if request.headers.get("authorization") != "Bearer secret":
                return JSONResponse({"title": "Unauthorized"}, 401)
            return await endpoint(request)
        return guarded

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await trace.start()
        await presence.start()
        yield
        await presence.close()
        await trace.close()

    app = Starlette(routes=ops_admin_routes(
        trace, presence, guard, StatsHistory(presence.instances),
        lambda: {"adapters": [], "transformers": []}), lifespan=lifespan)
    with serve_in_thread(app) as url:
        yield Context(url, "secret")


def test_trace_prints_an_aligned_table_of_every_step(daemon: Context) -> None:
    code, out = invoke(daemon, "trace", EID)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"envelope {EID}: 5 event(s) in the last 1h"
    header, _rule, *rows = lines[2:]
    assert header.split() == ["TIME", "(UTC)", "ELAPSED", "INSTANCE", "STEP", "DETAILS"]
    assert [r.split()[4] for r in rows] == ["accepted", "routed", "attempt", "retry-scheduled",
                                           "delivered"]
    step_col = header.index("STEP")
    assert all(r[step_col - 2:step_col] == "  " and r[step_col] != " " for r in rows)
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  \+0\.0ms +host-1", rows[0])
    assert "endpoint=shop version=3" in rows[0]
    assert "route=big-orders version=3 destination=erp" in rows[1]
    assert ('destination=erp outcome=transient status=503 latency=20.5ms '
            'error="HTTP 503 Service Unavailable"') in rows[2]
    assert "destination=erp attempt=1 retry_in=0.5s" in rows[3]
    assert "destination=erp status=200 latency=3.2ms attempt=2" in rows[4]


def test_trace_json_and_odd_ids(daemon: Context) -> None:
    code, out = invoke(daemon, "trace", EID, "--json", "--since", "30m")
    assert code == 0, out
    body = json.loads(out)
    assert body["id"] == EID and body["since"] == "30m"
    assert [e["step"] for e in body["events"]][:2] == ["accepted", "routed"]
    assert body["events"][2]["detail"]["status"] == 503
    assert body["events"][0]["instance"] == "host-1" and body["events"][0]["at"].endswith("Z")
    code, out = invoke(daemon, "trace", ODD, "--json")
    assert code == 0, out
    assert json.loads(out)["events"][0]["step"] == "unroutable"


def test_trace_of_a_request_reply_call_prints_its_legs(daemon: Context) -> None:
    code, out = invoke(daemon, "trace", RR)
    assert code == 0, out
    legs = out.split("\n\n")[-1].splitlines()
    assert legs == [
        "request/reply: route lookup → crm, timeout 2s",
        "  request  +0.0ms    sent to crm (on host-1)",
        "  call     +18.5ms   crm answered status=200 in 13.5ms (delivered, attempt 1) "
        "(on host-1)",
        "  reply    +26.9ms   sent back status=200 outcome=ok, 17.2ms after the request was "
        "taken (on host-1)",
        "  answer   +27.1ms   caller answered status=200 outcome=ok after waiting 26.9ms "
        "(on host-1)"]
    assert "leg=request" in out and "timeout=2.0" in out  # the routed step itself
    code, out = invoke(daemon, "trace", RR, "--json")
    body = json.loads(out)
    assert body["legs"]["call"]["latency_ms"] == 13.5
    assert body["legs"]["answer"]["latency_ms"] == 26.9
    code, out = invoke(daemon, "trace", EID, "--json")
    assert "legs" not in json.loads(out)  # one-way
    code, out = invoke(daemon, "trace", EID)
    assert "request/reply" not in out


def test_trace_of_an_unknown_id_or_a_bad_window_exits_1(daemon: Context) -> None:
    code, out = invoke(daemon, "trace", "nope")
    assert code == 1
    assert "HTTP 404" in out and "nothing was recorded for envelope 'nope'" in out
    code, out = invoke(daemon, "trace", EID, "--since", "yesterday")
    assert code == 1 and "HTTP 400" in out and "not a duration" in out
    code, out = invoke(Context(daemon.url, "wrong"), "trace", EID)
    assert code == 1 and "HTTP 401" in out and "ESB_ADMIN_TOKEN" in out
    code, out = invoke(Context("http://127.0.0.1:1", "secret"), "trace", EID)
    assert code == 1 and "cannot reach the esb daemon" in out


def test_instances_table_and_json(daemon: Context) -> None:
    code, out = invoke(daemon, "instances")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["INSTANCE", "HOST", "PID", "STARTED", "(UTC)", "ROUTES", "BUS",
                                "SEEN"]
    assert lines[2].startswith("*  host-1") and " 5 " in lines[2] and " yes " in lines[2]
    dest = next(line for line in lines if line.startswith("host-1") and "erp" in line)
    assert dest.split()[1:] == ["erp", "-", "-", "12", "1", "0", "2", "closed"]
    assert lines[-1] == "1 instance(s)"
    code, out = invoke(daemon, "instances", "--json")
    assert code == 0, out
    (me,) = json.loads(out)
    assert me["instance"] == "host-1" and me["self"] is True and me["route_version"] == 5
    assert me["destinations"]["erp"]["in_flight"] == 2


def test_details_formatting() -> None:
    assert details({"error": "x" * 300})[:8] == "error=xx" and details(
        {"error": "x" * 300}).endswith("…")
    assert details({"zeta": 1, "route": "r", "status": None, "alpha": [1]}) == \
        "route=r alpha=[1] zeta=1"
    assert details({"latency_ms": 12345.0}) == "latency=12.3s"
