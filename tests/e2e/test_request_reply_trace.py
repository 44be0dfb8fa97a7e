"""`esb trace` of request/reply calls through a daemon on the real RabbitMQ: the request leg,
the call to a real REST backend with its status and latency, the reply leg and how long the
caller waited (§12)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from esbtest.asgi import answer_late
from esbtest.waiting import wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from test_delivery_faults import cli

from esb.adapters.testing.peers import PeerServer

#: How long the backend takes for a found customer: the call's latency is at least this.
BACKEND_DELAY = 0.05


def backend_app() -> Starlette:
    async def customer(request: Request) -> Response:
        cid = int(request.path_params["id"])
        if cid == 404:
            return JSONResponse({"error": "no such customer"}, 404)
        if cid == 999:  # far longer than the caller waits: 5 s, unless it hangs up first
            await answer_late(request, 5)
        else:
            await asyncio.sleep(BACKEND_DELAY)
        return JSONResponse({"id": cid, "name": f"Customer {cid}"})

    return Starlette(routes=[Route("/customers/{id}", customer)])


@pytest.fixture(scope="module")
def facade(module_rabbit: Any, module_daemon_factory: Any) -> Iterator[Any]:
    with PeerServer(backend_app()) as peer:
        config = {
            "bus": module_rabbit.bus("crm"),
            "sources": {"api": {"adapter": "rest", "path": "/api/customers/{id}",
                                "methods": ["GET"], "params": {"id": "integer"}}},
            "destinations": {"crm": {
                "adapter": "rest", "method": "GET", "url": peer.url + "/customers/{data.id}",
                "delivery": {"timeout": "10s", "breaker": False}}},
        }
        routes = {"r.yaml": {"routes": [{
            "name": "customer-lookup", "from": ["api"], "to": "crm",
            "reply": {"timeout": "1s", "transform": [{"jmespath": "{customer: name}"}]}}]}}
        yield module_daemon_factory(config, routes).start()


def call(d: Any, cid: int) -> tuple[httpx.Response, str]:
    """GET customer ``cid`` through the facade; the answer and the envelope id, found the way
    an operator finds it: by the correlation id the caller sent."""
    correlation = f"c-{uuid.uuid4().hex}"
    r = httpx.get(f"{d.url}/api/customers/{cid}", headers={"X-Correlation-ID": correlation},
                  timeout=30)
    found = d.admin("GET", "/admin/trace", params={"correlation": correlation}).json()
    assert len(found["ids"]) == 1, found
    return r, found["ids"][0]


def legs_of(d: Any, eid: str, *steps: str) -> dict[str, Any]:
    """``esb trace ID --json`` once the trace holds ``steps``."""
    def traced() -> dict[str, Any] | None:
        out = cli(d, "trace", eid, "--json")
        if out.returncode != 0:
            return None
        body = json.loads(out.stdout)
        return body if set(steps) <= {e["step"] for e in body["events"]} else None

    return wait_until(traced, f"the trace of {eid} to hold {steps}", daemon=d)


def test_trace_shows_the_request_the_call_and_the_reply_with_latencies(facade: Any) -> None:
    r, eid = call(facade, 42)
    assert r.status_code == 200 and r.json() == {"customer": "Customer 42"}
    body = legs_of(facade, eid, "delivered", "replied", "answered")
    steps = [e["step"] for e in body["events"]]
    assert steps == ["accepted", "routed", "delivered", "replied", "transformed", "answered"]
    routed = body["events"][1]["detail"]
    assert routed["leg"] == "request" and routed["timeout"] == 1.0
    assert body["events"][4]["detail"]["leg"] == "reply"  # the reply leg's jmespath step

    legs = body["legs"]
    assert (legs["route"], legs["destination"], legs["timeout"]) == \
        ("customer-lookup", "crm", 1.0)
    call_leg, reply, answer = legs["call"], legs["reply"], legs["answer"]
    assert call_leg["status"] == 200 and call_leg["attempts"] == 1
    assert reply["status"] == 200 and reply["outcome"] == "ok"
    assert answer["status"] == 200 and answer["outcome"] == "ok"
    # plausible, whatever the machine's speed: each span contains the one inside it
    assert call_leg["latency_ms"] >= BACKEND_DELAY * 1000
    assert reply["latency_ms"] >= call_leg["latency_ms"]
    assert answer["latency_ms"] >= reply["latency_ms"]
    assert legs["request"]["offset_ms"] == 0
    assert 0 < call_leg["offset_ms"] <= reply["offset_ms"] <= answer["offset_ms"]
    assert legs["dropped"] is None

    table = cli(facade, "trace", eid).stdout
    assert "request/reply: route customer-lookup → crm, timeout 1s" in table
    lines = {line.split()[0]: line for line in table.splitlines()
             if line.startswith("  ")}
    assert "crm answered status=200 in " in lines["call"]
    assert "sent back status=200 outcome=ok" in lines["reply"]
    assert "caller answered status=200 outcome=ok after waiting " in lines["answer"]


def test_trace_of_a_refused_and_of_a_timed_out_call(facade: Any) -> None:
    r, eid = call(facade, 404)
    assert r.status_code == 404
    legs = legs_of(facade, eid, "attempt", "replied", "answered")["legs"]
    assert legs["call"]["status"] == 404 and legs["call"]["outcome"] == "permanent"
    assert legs["reply"]["outcome"] == "not-found"
    assert legs["answer"]["status"] == 404 and legs["answer"]["outcome"] == "not-found"

    r, eid = call(facade, 999)  # the backend takes 5 s; the caller waits 1 s
    assert r.status_code == 504
    legs = legs_of(facade, eid, "answered", "replied")["legs"]
    assert legs["answer"]["status"] == 504 and legs["answer"]["outcome"] == "timeout"
    assert legs["answer"]["latency_ms"] >= 500  # it waited for its timeout, not less
    # the destination's side gave up at the same deadline, with no second call
    assert legs["call"]["attempts"] == 1 and legs["call"]["outcome"] == "transient"
