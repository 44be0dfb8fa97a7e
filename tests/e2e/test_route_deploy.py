"""Live route deploys on RabbitMQ: two instances under load switch atomically within 2 s,
rollback restores the old routing, and an instance started later runs the current version."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from test_delivery_faults import cli

V1 = "routes:\n  - name: orders\n    match: {type: [order]}\n    to: [old]\n"
V2 = "routes:\n  - name: orders\n    match: {type: [order]}\n    to: [new]\n"


def old_and_new(rabbit: Any, sink: Any) -> dict[str, Any]:
    """One rest source, two rest destinations (``old``, ``new``) on the sink."""
    return {
        "bus": rabbit.bus("old", "new"),
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {d: {"adapter": "rest", "url": f"{sink.url}/{d}"}
                         for d in ("old", "new")},
    }


def test_deploy_switches_every_instance_atomically(rabbit: Any, sink: Any,
                                                   daemon_factory: Any, tmp_path: Path) -> None:
    config = old_and_new(rabbit, sink)
    a = daemon_factory(config, {"r.yaml": V1}, name="a").start()
    b = daemon_factory(config, {"r.yaml": V1}, name="b").start()
    sent: list[tuple[int, str, float, float]] = []  # seq, instance, sent at, answered at
    stop = threading.Event()

    def load() -> None:
        seq = 0
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                d = (a, b)[seq % 2]
                t0 = time.monotonic()
                r = c.post(f"{d.url}/in/shop/order", content=orjson.dumps({"seq": seq}),
                           headers={"Content-Type": "application/json",
                                    "Idempotency-Key": f"k-{seq}"})
                assert r.status_code == 202
                sent.append((seq, d.root.name, t0, time.monotonic()))
                seq += 1
                time.sleep(0.01)

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(2)
    new_dir = tmp_path / "v2"
    new_dir.mkdir()
    (new_dir / "r.yaml").write_text(V2)
    deploy_started = time.monotonic()
    r = cli(a, "routes", "deploy", str(new_dir), "--note", "send orders to new")
    deployed_at_a = time.monotonic()
    assert r.returncode == 0, r.stderr
    # b reports the same version within 2 s
    version_a = a.admin("GET", "/admin/routes").json()["version"]
    while b.admin("GET", "/admin/routes").json()["version"] != version_a:
        assert time.monotonic() - deployed_at_a < 2.0, "b did not switch within 2 s"
        time.sleep(0.02)
    switched_b = time.monotonic()
    time.sleep(2)
    stop.set()
    loader.join()
    total = len(sent)
    assert sink.wait_for(total, timeout=30)
    where: dict[int, list[str]] = {}
    for rec in sink.received:
        where.setdefault(orjson.loads(rec.body)["seq"], []).append(rec.path.strip("/"))
    for seq, instance, t0, _t1 in sent:
        dests = set(where.get(seq, []))
        assert len(dests) == 1, f"message {seq} went to {dests}: lost or routed by a mix"
        switched = deployed_at_a if instance == "a" else switched_b
        if t0 < deploy_started:
            assert dests == {"old"}, f"{seq} was sent before the deploy"
        elif t0 > switched:
            assert dests == {"new"}, f"{seq} was sent after {instance} switched"
    print(f"\ndeploy: {total} messages under load; a switched "
          f"{(deployed_at_a - deploy_started) * 1000:.0f} ms after the deploy began, "
          f"b {(switched_b - deployed_at_a) * 1000:.0f} ms after a")

    r = cli(a, "routes", "rollback")
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    before = len(sink.received)
    for i in range(5):
        httpx.post(f"{b.url}/in/shop/order", json={"seq": 10_000 + i})
    assert sink.wait_for(total + 5, timeout=20)
    assert {r.path for r in sink.received[before:]} == {"/old"}

    history = cli(a, "routes", "history")
    assert history.returncode == 0 and "send orders to new" in history.stdout
    latest = a.admin("GET", "/admin/routes").json()["version"]
    assert latest == version_a + 1  # the rollback is a new version with the old content
    c = daemon_factory(config, {"r.yaml": V2}, name="c").start()  # its own files say "new"
    assert c.admin("GET", "/admin/routes").json()["version"] == latest
    httpx.post(f"{c.url}/in/shop/order", json={"seq": 20_000})
    assert sink.wait_for(total + 6, timeout=20)
    assert sink.received[-1].path == "/old"


def test_refused_deploy_leaves_the_running_version(rabbit: Any, sink: Any,
                                                   daemon_factory: Any, tmp_path: Path) -> None:
    config = old_and_new(rabbit, sink)
    a = daemon_factory(config, {"r.yaml": V1}).start()
    before = a.admin("GET", "/admin/routes").json()["version"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "r.yaml").write_text("routes:\n  - name: x\n    match: {type: order}\n"
                                "    to: [nowhere]\n")
    r = cli(a, "routes", "deploy", str(bad))
    assert r.returncode == 2
    assert "r.yaml:3" in r.stderr and "r.yaml:4" in r.stderr and "nowhere" in r.stderr
    assert a.admin("GET", "/admin/routes").json()["version"] == before
    httpx.post(f"{a.url}/in/shop/order", json={"seq": 1})
    assert sink.wait_for(1, timeout=20)
    assert sink.received[0].path == "/old"
