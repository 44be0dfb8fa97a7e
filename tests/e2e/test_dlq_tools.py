"""The operator's dead-letter tools on the real broker: listing a fan-out's dead letters,
replaying one destination's with a fresh attempt history, progress on large replays, a replay
interrupted by a killed daemon, refusing unknown ids, purging — and the unroutable queue.

The ``esb`` commands run in this process (:mod:`esbtest.cli`), except the interrupted replay,
which runs the console script as the operator would and reads its progress as it comes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from esbtest.cli import esb as cli
from esbtest.waiting import settled
from test_delivery_faults import config, routes
from test_rest_flow import accepted, post_many

PROGRESS = re.compile(r"^(dlq|unroutable) replay: scanned (\d+) of (\d+)$", re.MULTILINE)


def number(key: str | None) -> int:
    """The order number in an ``order-N`` idempotency key."""
    assert key is not None, "every delivery carries the envelope's idempotency key"
    return int(key.split("-")[1])


def delivered_at(sink: Any, destination: str) -> Counter[str | None]:
    """Deliveries (2xx) per key at one destination of a sink shared by several."""
    with sink.lock:
        return Counter(r.key for r in sink.received if r.path == f"/{destination}")


def requests_at(sink: Any, destination: str) -> int:
    """Every request a destination got, whatever it was answered."""
    with sink.lock:
        return sum(1 for r, _ in sink.requests if r.path == f"/{destination}")


def dlq_items(d: Any, which: str = "dlq") -> list[dict[str, Any]]:
    r = cli(d, which, "list", "--limit", "5000", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def dlq_depth(d: Any) -> int:
    return int(d.admin("GET", "/admin/status").json()["queues"]["dlq"])


def attempts_at(d: Any, eid: str, destination: str) -> list[dict[str, Any]]:
    """The ``attempt`` events of ``eid`` at ``destination`` in its trace."""
    r = cli(d, "trace", eid, "--json")
    if r.returncode != 0:
        return []
    return [e["detail"] for e in json.loads(r.stdout)["events"]
            if e["step"] == "attempt" and e["detail"].get("destination") == destination]


def test_fan_out_dead_letters_replay_by_destination_with_a_fresh_history(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    """Both destinations of a fan-out refuse some orders (422): a refuses N % 4 in {0, 1}, b
    refuses N % 4 in {0, 2}, so the orders N % 4 == 0 have a dead letter at each, under one
    id. Replaying a's touches none of b's; a second failure starts a new attempt history."""
    broken = {"a": True}

    def judge(rec: Any) -> tuple[int, dict[str, str]]:
        rest = number(rec.key) % 4
        if rec.path == "/a" and broken["a"] and rest in (0, 1):
            return 422, {}
        if rec.path == "/b" and rest in (0, 2):
            return 422, {}
        return 200, {}

    sink.status_for = judge
    calm = {"concurrency": 4}  # the sink's listen backlog is short: no connect stalls
    d = daemon_factory(config(rabbit.bus("a", "b"), {"a": sink.url, "b": sink.url},
                              a=calm, b=calm), routes("a", "b")).start()
    n = 40
    assert len(accepted(asyncio.run(post_many(d.url, n)))) == n
    wait_until(lambda: len(delivered_at(sink, "a")) == len(delivered_at(sink, "b")) == 20,
               30, "the orders both destinations take")
    wait_until(lambda: len(dlq_items(d)) == n, 30, "40 dead letters")

    listed = dlq_items(d)
    keys = {dest: {i["key"] for i in listed if i["destination"] == dest} for dest in "ab"}
    assert keys["a"] == {f"order-{i}" for i in range(n) if i % 4 in (0, 1)}
    assert keys["b"] == {f"order-{i}" for i in range(n) if i % 4 in (0, 2)}
    copies = Counter(i["id"] for i in listed)
    assert sorted(copies.values()).count(2) == 10, "both copies of a doubly refused order"
    a_only = next(i["id"] for i in listed if number(i["key"]) % 4 == 1)
    b_only = next(i["id"] for i in listed if number(i["key"]) % 4 == 2)
    b_calls = requests_at(sink, "b")

    # a still refuses: its 20 are dead-lettered again, each with one attempt, not two
    r = cli(d, "dlq", "replay", "--all", "--destination", "a", "--wait", "30")
    assert r.returncode == 1, r.stderr  # nothing got anywhere: each one failed again
    assert "replayed 0, 20 failed again; 20 left in dlq" in r.stdout
    assert r.stdout.count(": dead-lettered again: ") == 20
    wait_until(lambda: len(dlq_items(d)) == n, 30, "a's dead letters back in the dlq")
    again = [i for i in dlq_items(d) if i["destination"] == "a"]
    assert len(again) == 20 and all(i["attempts"] == 1 for i in again), again
    shown = json.loads(cli(d, "dlq", "show", a_only, "--json").stdout)
    assert [a["destination"] for a in shown["esbattempts"]] == ["a"]
    steps = [h["step"] for h in shown["esbhops"]]
    assert steps[-3:] == ["dead-lettered", "replayed", "dead-lettered"], steps
    wait_until(lambda: len(attempts_at(d, a_only, "a")) == 2, 15, "both attempts traced")
    assert [e["attempt"] for e in attempts_at(d, a_only, "a")] == [1, 1]

    broken["a"] = False
    r = cli(d, "dlq", "replay", "--all", "--destination", "a")
    assert r.returncode == 0, r.stderr
    assert "replayed 20; 20 left in dlq" in r.stdout
    wait_until(lambda: len(delivered_at(sink, "a")) == n, 30, "a to receive every order")
    left = dlq_items(d)
    assert {i["destination"] for i in left} == {"b"} and len(left) == 20
    assert requests_at(sink, "b") == b_calls, "replaying a's dead letters sent nothing to b"

    # unknown ids and destinations are named, fail, and replay nothing
    r = cli(d, "dlq", "replay", "no-such-id")
    assert r.returncode == 1 and "no-such-id" in r.stderr, (r.stdout, r.stderr)
    assert "replayed" not in r.stdout
    r = cli(d, "dlq", "replay", b_only, "no-such-id")
    assert r.returncode == 1 and "no-such-id" in r.stderr and b_only not in r.stderr
    r = cli(d, "dlq", "replay", b_only, "--destination", "a")
    assert r.returncode == 1 and b_only in r.stderr, "b's dead letter is not a's"
    r = cli(d, "dlq", "replay", "--all", "--destination", "nowhere")
    assert r.returncode == 1 and "nowhere" in r.stderr
    assert len(dlq_items(d)) == 20

    r = cli(d, "dlq", "purge", input="n\n")
    assert r.returncode == 1 and "Aborted" in r.stderr
    assert len(dlq_items(d)) == 20, "declining the confirmation purges nothing"
    r = cli(d, "dlq", "purge", "--yes")
    assert r.returncode == 0 and "purged 20" in r.stdout, r.stderr
    assert dlq_items(d) == []
    assert requests_at(sink, "b") == b_calls


def test_large_replay_shows_progress_and_an_interrupted_one_loses_nothing(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    """500 dead letters; the daemon is killed (-9) a fifth of the way into ``dlq replay
    --all``; after a restart a second replay finishes the job: every order is delivered
    (a message replayed just before the kill may arrive twice; none may be missing).

    500 is enough to see the progress (a line per tenth) and to kill the daemon well inside
    the replay; more only adds the time it takes to post and dead-letter them."""
    broken = True
    sink.status_for = lambda rec: (422, {}) if broken else (200, {})
    d = daemon_factory(config(rabbit.bus("out"), {"out": sink.url},
                              out={"concurrency": 8}), routes("out")).start()
    n = 500
    assert len(accepted(asyncio.run(post_many(d.url, n)))) == n
    wait_until(lambda: dlq_depth(d) == n, 90, f"{n} dead letters")
    assert sink.unique() == set()
    broken = False

    env = {**os.environ, "ESB_ADMIN_URL": d.url, "ESB_ADMIN_TOKEN": d.token}
    proc = subprocess.Popen([sys.executable, "-m", "esb.bus.cli.main", "dlq", "replay", "--all"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        for line in proc.stderr:
            seen.append(line)
            m = PROGRESS.match(line.strip())
            if m and int(m[2]) >= n // 5:
                d.kill()
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    first_err = "".join(seen) + err
    assert {int(m[3]) for m in PROGRESS.finditer(first_err)} == {n}, first_err
    assert proc.returncode == 1 and "interrupted" in first_err, (out, first_err)

    d.start()
    left = dlq_depth(d)
    # (How many were replayed before the kill landed depends on how fast this test read the
    # progress line: only that the replay was cut short is asserted.)
    assert 0 < left < n, f"{left} left: the kill should have cut the replay short"
    r = cli(d, "dlq", "replay", "--all")
    assert r.returncode == 0, r.stderr
    assert f"replayed {left}; 0 left in dlq" in r.stdout
    lines = [(int(m[2]), int(m[3])) for m in PROGRESS.finditer(r.stderr)]
    assert len(lines) >= 2 and lines[-1] == (left, left), r.stderr
    expected = {f"order-{i}" for i in range(n)}
    assert sink.wait_for(n, timeout=60), len(sink.unique())
    counts = sink.keys()
    assert set(counts) == expected, "every order delivered, and nothing else"
    assert dlq_depth(d) == 0
    dupes = sum(c - 1 for c in counts.values())
    print(f"\ninterrupted replay: {n - left} off the dlq before the kill, {left} replayed "
          f"after the restart; {n} delivered, duplicates {dupes}")


def test_unroutable_replay_by_id_and_purge(rabbit: Any, sink: Any, daemon_factory: Any,
                                           tmp_path: Any) -> None:
    only_orders = {"r.yaml": {"routes": [{"name": "orders", "match": {"type": ["order"]},
                                          "to": ["out"]}]}}
    d = daemon_factory(config(rabbit.bus("out"), {"out": sink.url}), only_orders).start()
    ids = []
    for i in range(3):
        r = httpx.post(f"{d.url}/in/shop/invoice", json={"i": i},
                       headers={"Idempotency-Key": f"inv-{i}"})
        assert r.status_code == 202
        ids.append(r.json()["id"])
    assert {i["id"] for i in dlq_items(d, "unroutable")} == set(ids)
    r = cli(d, "unroutable", "replay", "no-such-id")
    assert r.returncode == 1 and "no-such-id" in r.stderr

    new_routes = tmp_path / "all"
    new_routes.mkdir()
    (new_routes / "r.yaml").write_text("routes:\n  - name: all\n    to: [out]\n")
    assert cli(d, "routes", "deploy", str(new_routes)).returncode == 0
    r = cli(d, "unroutable", "replay", ids[0])
    assert r.returncode == 0, r.stderr
    assert "replayed 1; 2 left in unroutable" in r.stdout
    assert sink.wait_for(1, timeout=30)
    r = cli(d, "unroutable", "purge", "--yes")
    assert r.returncode == 0 and "purged 2" in r.stdout, r.stderr
    assert dlq_items(d, "unroutable") == []
    # a purged envelope must not be delivered late: once nothing is queued, retrying or in
    # flight, nothing more can arrive
    wait_until(lambda: settled(d), 30, "nothing left to deliver")
    assert sink.keys() == Counter({"inv-0": 1})
