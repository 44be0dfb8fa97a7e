"""Transformer errors at run time.

A permanent one (``TransformError``, ``PermanentError``, any unexpected exception) dead-letters
the envelope once, with the step's name, and is never retried; the sender was told "accepted".
A transient one (``TransientError``) from a step that runs while the sender waits publishes
nothing and tells the sender to try again (REST 503 + Retry-After; an AMQP source leaves the
message on its queue), until the step works again.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from esbtest.cli import esb
from esbtest.waiting import settled

ROOT = Path(__file__).resolve().parents[2]

#: The python steps the daemon imports (its working folder is on ``sys.path``). ``enrich``
#: fails with a TransientError while the file ``transient-fault`` exists in that folder.
STEPS = """\
from pathlib import Path

from esb.bus.errors import PermanentError, TransientError


def refuse(env):
    raise PermanentError("customer unknown")


def enrich(env):
    if Path("transient-fault").exists():
        raise TransientError("customer service down", retry_after=2)
    return {**env.data, "enriched": True}
"""

#: Every route of these tests; a message's type picks one.
ROUTES = {"r.yaml": {"routes": [
    {"name": "refused", "match": {"type": ["refuse"]}, "transform": ["check-customer"],
     "to": ["erp"]},
    {"name": "refused-for-erp", "match": {"type": ["refuse-erp"]},
     "to": [{"destination": "erp", "transform": ["check-customer"]}]},
    {"name": "enriched", "match": {"type": ["enrich"]}, "transform": ["enrich"],
     "to": ["erp"]},
    # crm needs no transform: its copy must not be published either while erp's step fails
    {"name": "enriched-for-erp", "match": {"type": ["enrich-erp"]},
     "to": ["crm", {"destination": "erp", "transform": ["enrich"]}]},
]}}


def test_failing_step_dead_letters_with_its_name(sink: Any, daemon_factory: Any) -> None:
    config = {
        "bus": {"url": "embedded"},
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"erp": {"adapter": "rest", "url": f"{sink.url}/erp"}},
    }
    stylesheet = "config/xslt/canonical-to-erp.xsl"  # inside the daemon's folder, as it must
    routes = {"r.yaml": {"routes": [{
        "name": "to-erp", "match": {"type": ["order"]},
        # JSON straight into XSLT: the step refuses it (json-to-xml is missing on purpose)
        "to": [{"destination": "erp", "transform": [{"xslt": stylesheet}]}]}]}}
    d = daemon_factory(config, routes, files={stylesheet: (ROOT / stylesheet).read_text()}
                       ).start()
    r = httpx.post(f"{d.url}/in/shop/order", json={"customer": "ACME"})
    assert r.status_code == 202  # accepted: it is safe in the DLQ
    assert eventually(lambda: dead_letters(d))
    items = json.loads(esb(d, "dlq", "list", "--json").stdout)
    assert len(items) == 1
    item = items[0]
    assert item["id"] == r.json()["id"]
    assert item["route"] == "to-erp" and item["destination"] == "erp"
    assert "xslt" in item["error"] and "XML payload" in item["error"]
    assert item["attempts"] == 0  # never sent, never retried
    assert eventually(lambda: settled(d))
    assert sink.requests == []


def step_config(bus: dict[str, Any], sink_url: str, **sources: Any) -> dict[str, Any]:
    return {
        "bus": bus,
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}, **sources},
        "destinations": {name: {"adapter": "rest", "url": f"{sink_url}/{name}",
                                "delivery": {"backoff": {"initial": "1s", "max": "2s"}}}
                         for name in ("erp", "crm")},
        "transformers": {"check-customer": {"python": "e2e_steps:refuse"},
                         "enrich": [{"python": "e2e_steps:enrich"}]},
    }


def dead_letters(d: Any) -> list[dict[str, Any]]:
    return d.admin("GET", "/admin/dlq").json()["items"]


def eventually(check: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


# The python-step tests share one daemon: each looks only at what its own requests did (the
# dead letters with its ids, the requests the sink got since it began).
@pytest.fixture(scope="module")
def step_daemon(module_rabbit: Any, module_sink: Any, module_daemon_factory: Any) -> Any:
    d = module_daemon_factory(step_config(module_rabbit.bus("erp", "crm"), module_sink.url),
                              ROUTES, files={"e2e_steps.py": STEPS})
    return d.start()


def test_permanent_error_from_a_python_step_dead_letters_with_the_step_name(
        step_daemon: Any, module_sink: Any) -> None:
    d, sink = step_daemon, module_sink
    before = len(sink.requests)
    ids = {}
    for etype, route, dest in (("refuse", "refused", None),
                               ("refuse-erp", "refused-for-erp", "erp")):
        r = httpx.post(f"{d.url}/in/shop/{etype}", json={"customer": "NOBODY"})
        assert r.status_code == 202, r.text  # accepted: it is safe in the DLQ
        ids[r.json()["id"]] = (route, dest)
    def mine() -> list[dict[str, Any]]:
        return [item for item in dead_letters(d) if item["id"] in ids]

    assert eventually(lambda: len(mine()) >= 2)
    items = mine()
    assert len(items) == 2, items
    for item in items:
        route, dest = ids[item["id"]]
        assert (item["route"], item["destination"]) == (route, dest)
        assert item["error"] == "transformer 'check-customer': PermanentError: customer unknown"
        assert item["attempts"] == 0  # never sent, never retried
    assert eventually(lambda: settled(d))
    assert len(mine()) == 2, "dead-lettered once each"
    assert sink.requests[before:] == []


@pytest.mark.parametrize(("etype", "paths"), [
    ("enrich", ["/erp"]),                 # the route's own chain
    ("enrich-erp", ["/crm", "/erp"]),     # one destination's chain
])
def test_transient_error_asks_the_sender_to_retry_and_publishes_nothing(
        step_daemon: Any, module_sink: Any, etype: str, paths: list[str]) -> None:
    d, sink = step_daemon, module_sink
    before = len(sink.requests)
    dead_before = dead_letters(d)
    fault = d.root / "transient-fault"
    fault.touch()
    url = f"{d.url}/in/shop/{etype}"
    for _ in range(2):  # the same answer each time, while the step fails
        r = httpx.post(url, json={"customer": "ACME"})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"]
        assert r.json()["title"] == "Transform step asked for a retry"  # not "Bus unavailable"
        assert "transformer 'enrich/python'" in r.json()["detail"]
        assert "customer service down" in r.json()["detail"]
    assert eventually(lambda: settled(d))
    assert sink.requests[before:] == [], "nothing was published"
    assert dead_letters(d) == dead_before

    fault.unlink()  # the step works again: the sender's retry goes through
    r = httpx.post(url, json={"customer": "ACME"})
    assert r.status_code == 202, r.text
    assert eventually(lambda: len(sink.requests[before:]) >= len(paths))
    assert eventually(lambda: settled(d))
    received = [rec for rec, _ in sink.requests[before:]]
    assert sorted(rec.path for rec in received) == paths
    erp = next(rec for rec in received if rec.path == "/erp")
    assert json.loads(erp.body) == {"customer": "ACME", "enriched": True}
    assert dead_letters(d) == dead_before


@contextlib.contextmanager
def legacy_queue(url: str, name: str) -> Iterator[Any]:
    """A queue standing for a legacy system's, deleted afterwards."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.queue_declare(name, durable=True)
        yield channel
    finally:
        with contextlib.suppress(Exception):
            conn.channel().queue_delete(name)
        with contextlib.suppress(Exception):
            conn.close()


def test_amqp_source_keeps_a_message_a_step_cannot_take_yet_and_acks_a_refused_one(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    queue = f"{rabbit.prefix}-legacy-orders"
    with legacy_queue(rabbit.url, queue) as channel:
        legacy = {"adapter": "amqp", "url": "${LEGACY_URL}", "queue": queue,
                  "content_type": "application/json", "retry_delay": "0.5s"}
        d = daemon_factory(step_config(rabbit.bus("erp", "crm"), sink.url, legacy=legacy),
                           ROUTES, files={"e2e_steps.py": STEPS},
                           env={"LEGACY_URL": rabbit.url})
        fault = d.root / "transient-fault"
        fault.touch()
        d.start()

        def send(etype: str, message_id: str) -> None:
            channel.basic_publish("", queue, json.dumps({"customer": "ACME"}).encode(),
                                  pika.BasicProperties(type=etype, message_id=message_id,
                                                       delivery_mode=2))

        send("refuse", "m-refused")
        send("enrich", "m-later")
        assert eventually(lambda: dead_letters(d))
        refused = dead_letters(d)
        assert [i["id"] for i in refused] == ["m-refused"]
        assert refused[0]["error"].startswith("transformer 'check-customer': ")
        def handed_back() -> list[str]:
            return [line for line in d.log(200_000).splitlines()
                    if "the bus did not take a legacy message" in line]

        # the transient one goes back to its queue, paced (retry_delay), again and again
        assert eventually(lambda: len(handed_back()) >= 2), d.log()
        assert sink.requests == [] and len(dead_letters(d)) == 1
        assert all("transformer 'enrich/python'" in line for line in handed_back()), \
            "only the transient one: the refused one was acked"

        fault.unlink()
        assert eventually(lambda: len(sink.received) >= 1)
        assert json.loads(sink.received[0].body) == {"customer": "ACME", "enriched": True}
        assert eventually(lambda: channel.queue_declare(queue, passive=True)
                          .method.message_count == 0)
        d.stop()


def test_replay_runs_the_destinations_steps_again_with_the_fix(
        rabbit: Any, sink: Any, daemon_factory: Any, tmp_path: Path) -> None:
    """A destination's own step failed: its dead letter is the envelope before those steps.
    After a fixed route set is deployed, replay runs the (fixed) steps again on the way to that
    destination only — it neither skips them nor sends the other destinations a second copy."""
    stylesheet = "config/xslt/canonical-to-erp.xsl"  # inside the daemon's folder, as it must

    def route_set(fixed: bool) -> dict[str, Any]:
        steps: list[Any] = [{"xslt": stylesheet}]
        if fixed:
            steps.insert(0, {"json-to-xml": {"root": "order"}})
        return {"routes": [{"name": "to-erp", "match": {"type": ["order"]},
                            "to": ["crm", {"destination": "erp", "transform": steps}]}]}

    cfg = step_config(rabbit.bus("erp", "crm"), sink.url)
    d = daemon_factory(cfg, {"r.yaml": route_set(False)},
                       files={stylesheet: (ROOT / stylesheet).read_text()}).start()
    r = httpx.post(f"{d.url}/in/shop/order", json={"customer": "ACME", "lines": []})
    assert r.status_code == 202
    items = eventually(lambda: dead_letters(d))
    assert len(items) == 1 and items[0]["destination"] == "erp"
    assert eventually(lambda: sink.requests)  # crm's copy went
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    (fixed / "r.yaml").write_text(json.dumps(route_set(True)))
    deployed = esb(d, "routes", "deploy", str(fixed))
    assert deployed.returncode == 0, deployed.stderr
    replayed = esb(d, "dlq", "replay", r.json()["id"])
    assert replayed.returncode == 0, replayed.stderr
    erp = eventually(lambda: [rec for rec, _ in sink.requests if rec.path == "/erp"])
    assert len(erp) == 1
    assert b"<SalesOrder" in erp[0].body and b"ACME" in erp[0].body
    assert erp[0].headers["content-type"].startswith("application/xml")
    assert eventually(lambda: settled(d))
    assert [rec.path for rec, _ in sink.requests].count("/crm") == 1
    assert dead_letters(d) == []
