"""Replay says what became of each envelope (delivered, queued, dead-lettered again, with the
error) and exits 1 when nothing got anywhere; the trace has the ``replayed`` step either way;
every dead letter is counted where it is made (delivery, ingress transform, replay), and
transform failures have their own metric. On RabbitMQ."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from esbtest.cli import esb as cli  # in this process: no interpreter to start per command
from esbtest.waiting import wait_until

pytestmark = pytest.mark.rabbitmq

STEPS = """\
from pathlib import Path

from esb.bus.errors import PermanentError


def check(env):
    if not Path("customers-loaded").exists():
        raise PermanentError("customer unknown")
    return env.data
"""

ROUTES = {"r.yaml": {"routes": [
    {"name": "orders", "match": {"type": ["order"]}, "to": ["erp"]},
    {"name": "checked", "match": {"type": ["checked"]},
     "to": [{"destination": "erp", "transform": ["steps:check"]}]},
]}}


def metric(d: Any, name: str, **labels: str) -> float:
    text = httpx.get(f"{d.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def refusing_once(rabbit: Any, sink: Any, daemon_factory: Any, **kw: Any) -> Any:
    """A started daemon on RabbitMQ whose one destination is tried once (then dead-letters)."""
    return daemon_factory({
        "bus": rabbit.bus("erp"),
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"erp": {"adapter": "rest", "url": f"{sink.url}/erp",
                                 "delivery": {"max_attempts": 1}}},
    }, ROUTES, files={"steps.py": STEPS}, **kw).start()


def dlq_ids(d: Any) -> list[str]:
    return [i["id"] for i in json.loads(cli(d, "dlq", "list", "--json").stdout)]


def test_replay_reports_each_outcome_and_counts_every_dead_letter(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    refusing = {"on": True}
    sink.status_for = lambda rec: (400, {}) if refusing["on"] else (200, {})
    d = refusing_once(rabbit, sink, daemon_factory, env={"PYTHONPATH": ""})
    refused = httpx.post(f"{d.url}/in/shop/order", json={"n": 1}).json()["id"]
    unchecked = httpx.post(f"{d.url}/in/shop/checked", json={"n": 2}).json()["id"]
    wait_until(lambda: set(dlq_ids(d)) == {refused, unchecked}, "two dead letters", daemon=d)
    # every dead letter counted where it was made: the delivery, and the ingress transform
    assert metric(d, "esb_dead_lettered_total", destination="erp") == 2
    assert metric(d, "esb_transform_failed_total", route="checked", destination="erp",
                  step="steps:check", kind="permanent") == 1
    wait_until(lambda: json.loads(cli(d, "instances", "--json").stdout)[0]["destinations"]
               ["erp"]["dead_lettered"] == 2, "esb instances DEAD 2 (next heartbeat)", daemon=d)

    # both fail again at once: each says how, nothing was replayed, exit 1
    r = cli(d, "dlq", "replay", "--all", "--wait", "20")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{unchecked}: dead-lettered again: transformer 'steps:check'" in r.stdout
    assert f"{refused}: dead-lettered again:" in r.stdout and "400" in r.stdout
    assert "replayed 0, 2 failed again" in r.stdout
    wait_until(lambda: len(dlq_ids(d)) == 2, "both back in the DLQ", daemon=d)
    assert metric(d, "esb_dead_lettered_total", destination="erp") == 4  # replays count too
    assert metric(d, "esb_transform_failed_total", route="checked", destination="erp",
                  step="steps:check", kind="permanent") == 2

    # fixed: delivered, reported with the destination's status, exit 0
    refusing["on"] = False
    (d.root / "customers-loaded").write_text("")
    r = cli(d, "dlq", "replay", "--all", "--wait", "30", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["replayed"] == 2 and result["failed"] == 0 and result["left"] == 0
    outcomes = {o["id"]: o for o in result["results"]}
    assert outcomes[refused]["outcome"] == "delivered"
    assert outcomes[refused]["destinations"] == ["erp"] and outcomes[refused]["status"] == 200
    assert outcomes[unchecked]["outcome"] == "delivered"

    # the trace has a replayed step for each attempt, the failed ones included
    trace = json.loads(cli(d, "trace", unchecked, "--json").stdout)
    replayed = [e["detail"].get("outcome") for e in trace["events"] if e["step"] == "replayed"]
    assert replayed == ["dead-lettered", "queued"]


def test_replay_without_waiting_reports_queued(rabbit: Any, sink: Any,
                                               daemon_factory: Any) -> None:
    sink.status_for = lambda rec: (400, {})
    d = refusing_once(rabbit, sink, daemon_factory)
    eid = httpx.post(f"{d.url}/in/shop/order", json={"n": 1}).json()["id"]
    wait_until(lambda: dlq_ids(d) == [eid], "a dead letter", daemon=d)
    sink.status_for = None
    r = cli(d, "dlq", "replay", eid, "--wait", "0")
    assert r.returncode == 0, r.stderr
    assert f"{eid}: queued for erp (not delivered yet: see esb trace {eid})" in r.stdout
    assert "replayed 1; 0 left in dlq" in r.stdout
    assert sink.wait_for(1, timeout=20)


def test_dlq_show_and_trace_take_a_prefix_or_the_idempotency_key(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    sink.status_for = lambda rec: (400, {})
    d = refusing_once(rabbit, sink, daemon_factory)
    eid = httpx.post(f"{d.url}/in/shop/order", json={"n": 1},
                     headers={"Idempotency-Key": "order/4711"}).json()["id"]
    wait_until(lambda: dlq_ids(d) == [eid], "a dead letter", daemon=d)
    for ref in ("order/4711", eid[:8], eid):
        shown = cli(d, "dlq", "show", ref, "--json")
        assert shown.returncode == 0, (ref, shown.stderr)
        assert json.loads(shown.stdout)["id"] == eid
    assert cli(d, "dlq", "show", "no-such").returncode == 1
    for ref in ("order/4711", eid[:8]):
        traced = wait_until(lambda ref=ref: (r := cli(d, "trace", ref, "--json")).returncode
                            == 0 and r, f"esb trace {ref}", daemon=d)
        body = json.loads(traced.stdout)
        assert body["id"] == eid
        assert [e["step"] for e in body["events"]][:2] == ["accepted", "routed"]
