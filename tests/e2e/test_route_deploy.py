"""Live route deploys on RabbitMQ: two instances under load switch atomically within 2 s,
rollback restores the old routing, and an instance started later runs the current version.

Each version has two routes for the load's type, fanning out to two destinations, and the two
versions' destination sets differ, so a message routed partly by each version shows up as a
wrong set of (route, destination) legs. The destinations receive structured CloudEvents, so
every delivery carries the route version it was routed by (``esbrouteversion`` and the
``routed`` hop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from esbtest.cli import esb

from esb.bus.envelope import bookkeeping

Leg = tuple[str, str]  # (route name, destination)

V1_LEGS: frozenset[Leg] = frozenset({("first", "d1"), ("second", "d2")})
V2_LEGS: frozenset[Leg] = frozenset({("first", "d2"), ("second", "d3")})
DESTINATIONS = ("d1", "d2", "d3")
# Seconds from the deploy POST to an instance running the new version: typically well under
# one (printed); bounded generously, as the other instance reads the route stream and compiles
# while the load runs on a machine that may be busy.
SWITCH_LIMIT = 5.0


def route_file(legs: Iterable[Leg]) -> str:
    """One route per leg, each matching every ``order``."""
    lines = ["routes:"]
    for name, dest in sorted(legs):
        lines += [f"  - name: {name}", "    match: {type: [order]}", f"    to: [{dest}]"]
    return "\n".join(lines) + "\n"


V1 = route_file(V1_LEGS)
V2 = route_file(V2_LEGS)


def three_destinations(rabbit: Any, sink: Any) -> dict[str, Any]:
    """One rest source; three rest destinations on the sink (``/d1`` ...), each sent the
    whole envelope as a structured CloudEvent."""
    return {
        "bus": rabbit.bus(*DESTINATIONS),
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {d: {"adapter": "rest", "url": f"{sink.url}/{d}",
                             "cloudevents": "structured"} for d in DESTINATIONS},
    }


@dataclass(frozen=True)
class Delivery:
    """What one destination received, read from the CloudEvent body."""

    seq: int
    version: int
    leg: Leg


def delivery(rec: Any) -> Delivery:
    """Parse a sink record; the ``routed`` hop must agree with the envelope's attributes."""
    event = bookkeeping(orjson.loads(rec.body))  # a structured CloudEvent: hops as JSON text
    dest = rec.path.strip("/")
    version, route = event["esbrouteversion"], event["esbroute"]
    assert event["esbdestination"] == dest, event
    routed = [h["detail"] for h in event["esbhops"] if h["step"] == "routed"]
    assert routed == [{"route": route, "destination": dest, "version": version}], event
    return Delivery(event["data"]["seq"], version, (route, dest))


def legs_by_seq(sink: Any) -> dict[int, set[tuple[int, Leg]]]:
    """Every message's (version, leg) pairs as delivered (a redelivery counts once)."""
    with sink.lock:
        records = list(sink.received)
    out: dict[int, set[tuple[int, Leg]]] = {}
    for d in map(delivery, records):
        out.setdefault(d.seq, set()).add((d.version, d.leg))
    return out


def wait_delivered(sink: Any, seqs: Iterable[int], timeout: float = 30
                   ) -> dict[int, set[tuple[int, Leg]]]:
    """Wait until each of ``seqs`` reached two legs (every version fans out to two)."""
    wanted = set(seqs)
    deadline = time.monotonic() + timeout
    while True:
        got = legs_by_seq(sink)
        short = {s for s in wanted if len(got.get(s, ())) < 2}
        if not short or time.monotonic() > deadline:
            assert not short, f"{len(short)} message(s) lost, e.g. {sorted(short)[:10]}"
            return got
        time.sleep(0.05)


def assert_routed_by(legs: set[tuple[int, Leg]], version: int, expected: frozenset[Leg],
                     what: str) -> None:
    assert legs == {(version, leg) for leg in expected}, \
        f"{what}: expected {sorted(expected)} by version {version}, got {sorted(legs)}"


def route_version(client: httpx.Client, daemon: Any) -> int:
    """The version of the route set the daemon routes by right now."""
    r = client.get(f"{daemon.url}/admin/routes", headers=auth(daemon))
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


def auth(daemon: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {daemon.token}"}


def post_order(client: httpx.Client, daemon: Any, seq: int, key_prefix: str) -> httpx.Response:
    return client.post(f"{daemon.url}/in/shop/order", content=orjson.dumps({"seq": seq}),
                       headers={"Content-Type": "application/json",
                                "Idempotency-Key": f"{key_prefix}-{seq}"})


def send_and_check(daemons: list[Any], seqs: range, key_prefix: str, sink: Any,
                   version: int, expected: frozenset[Leg]) -> None:
    """Send one order per seq (round robin over ``daemons``) and check each went wholly by
    ``version`` to ``expected``."""
    with httpx.Client(timeout=10) as c:
        for seq in seqs:
            r = post_order(c, daemons[seq % len(daemons)], seq, key_prefix)
            assert r.status_code == 202, r.text
    got = wait_delivered(sink, seqs)
    for seq in seqs:
        assert_routed_by(got[seq], version, expected, f"message {seq}")


def wait_version(daemons: list[Any], version: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as c:
        for d in daemons:
            while route_version(c, d) != version:
                assert time.monotonic() < deadline, f"{d.root.name} never ran version {version}"
                time.sleep(0.02)


@dataclass(frozen=True)
class Sent:
    seq: int
    instance: str
    sent_at: float
    answered_at: float


@dataclass
class Load:
    """Orders POSTed one at a time, alternating between instances, until stopped."""

    daemons: list[Any]
    key_prefix: str
    sent: list[Sent] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10) as c:
            seq = 0
            while not self.stop.is_set():
                d = self.daemons[seq % len(self.daemons)]
                t0 = time.monotonic()
                try:
                    r = post_order(c, d, seq, self.key_prefix)
                except httpx.HTTPError as exc:
                    self.refused.append(f"{seq}: {exc!r}")
                    return
                if r.status_code != 202:
                    self.refused.append(f"{seq}: {r.status_code} {r.text}")
                    return
                self.sent.append(Sent(seq, d.root.name, t0, time.monotonic()))
                seq += 1
                time.sleep(0.005)

    def wait_for(self, n: int, timeout: float = 30) -> None:
        """Until ``n`` more orders were accepted."""
        target = len(self.sent) + n
        deadline = time.monotonic() + timeout
        while len(self.sent) < target:
            assert not self.refused, self.refused
            assert time.monotonic() < deadline, f"load stalled at {len(self.sent)} orders"
            time.sleep(0.02)


def switched_at(daemon: Any, version: int, since: float) -> float:
    """Poll the daemon until it routes by ``version``; the first time it was seen doing so.
    Gives up ``SWITCH_LIMIT`` + 3 s after ``since`` (the assertion says by how much)."""
    with httpx.Client(timeout=5) as c:
        while route_version(c, daemon) < version:
            if time.monotonic() - since > SWITCH_LIMIT + 3:
                break
            time.sleep(0.005)
        return time.monotonic()


@dataclass(frozen=True)
class Deployed:
    """A deploy POST: its answer, when it was sent, and how soon each instance ran it."""

    answer: dict[str, Any]
    posted_at: float
    #: per instance, seconds from the POST to the first time it was seen running the version
    switched: dict[str, float]


def deploy_and_time(a: Any, instances: list[Any], files: dict[str, str],
                    version: int) -> Deployed:
    """POST the deploy to ``a`` (as ``esb routes deploy`` does) while every instance is
    watched for ``version``."""
    with ThreadPoolExecutor(len(instances)) as pool, httpx.Client(timeout=30) as c:
        posted_at = time.monotonic()
        watchers: dict[str, Future[float]] = {
            d.root.name: pool.submit(switched_at, d, version, posted_at) for d in instances}
        r = c.post(f"{a.url}/admin/routes/deploy", headers=auth(a),
                   json={"files": files, "by": "test", "note": "orders to d2 and d3"})
        assert r.status_code == 201, r.text
        return Deployed(r.json(), posted_at,
                        {n: w.result() - posted_at for n, w in watchers.items()})


def assert_single_switch(sent: list[Sent], got: dict[int, set[tuple[int, Leg]]],
                         old: int, deployed: Deployed) -> None:
    """Per instance, in sequence order: old version, then (once) the new one for good.
    Orders answered before the deploy went by the old version; orders sent after the
    instance was seen running the new one went by the new one."""
    new = old + 1
    for instance in sorted({s.instance for s in sent}):
        mine = [s for s in sent if s.instance == instance]
        versions = [next(iter(got[s.seq]))[0] for s in mine]
        # only two values: sorted means one switch, old to new, and none back
        assert set(versions) == {old, new} and versions == sorted(versions), \
            f"{instance}: versions in sequence order {versions}"
        for s in mine:
            v = next(iter(got[s.seq]))[0]
            if s.answered_at < deployed.posted_at:
                assert v == old, f"{s.seq} was accepted before the deploy but went by {v}"
            if s.sent_at > deployed.posted_at + deployed.switched[instance]:
                assert v == new, f"{s.seq} was sent after {instance} switched but went by {v}"


def test_deploy_switches_every_instance_atomically(rabbit: Any, sink: Any,
                                                   daemon_factory: Any) -> None:
    config = three_destinations(rabbit, sink)
    a = daemon_factory(config, {"r.yaml": V1}, name="a").start()
    b = daemon_factory(config, {"r.yaml": V1}, name="b").start()
    with httpx.Client(timeout=5) as c:
        old = route_version(c, a)
        assert route_version(c, b) == old
    load = Load([a, b], rabbit.prefix)
    loader = threading.Thread(target=load.run)
    loader.start()
    try:
        load.wait_for(40)
        deployed = deploy_and_time(a, [a, b], {"r.yaml": V2}, old + 1)
        load.wait_for(40)
    finally:
        load.stop.set()
        loader.join()
    assert not load.refused, load.refused
    print(f"\ndeploy under load: {len(load.sent)} orders; running version {old + 1} "
          + ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in sorted(deployed.switched.items()))
          + " after the deploy POST")
    answer = deployed.answer
    assert answer["version"] == old + 1 and answer["running"] is True, answer
    for name, seconds in deployed.switched.items():
        assert seconds <= SWITCH_LIMIT, f"{name} ran the new version {seconds:.2f} s after"

    got = wait_delivered(sink, (s.seq for s in load.sent))
    legs = {old: V1_LEGS, old + 1: V2_LEGS}
    for s in load.sent:
        versions = {v for v, _ in got[s.seq]}
        assert len(versions) == 1, f"message {s.seq} routed by a mix: {sorted(got[s.seq])}"
        (v,) = versions
        assert v in legs, f"message {s.seq} went by version {v}"
        assert_routed_by(got[s.seq], v, legs[v], f"message {s.seq}")
    assert_single_switch(load.sent, got, old, deployed)

    rollback_and_start_a_third(a, b, daemon_factory, config, sink, rabbit.prefix, old)


def rollback_and_start_a_third(a: Any, b: Any, daemon_factory: Any, config: dict[str, Any],
                               sink: Any, key_prefix: str, old: int) -> None:
    """Roll back to ``old``'s routes on both instances, then start an instance whose own files
    say V2: it runs the stored rollback and routes by V1."""
    r = a.admin("POST", "/admin/routes/rollback", json={"version": None, "by": "test"})
    assert r.status_code == 201, r.text
    rolled = r.json()
    assert rolled["version"] == old + 2 and rolled["rollback_of"] == old, rolled
    wait_version([a, b], old + 2)
    send_and_check([a, b], range(10_000, 10_010), key_prefix, sink, old + 2, V1_LEGS)

    c = daemon_factory(config, {"r.yaml": V2}, name="c").start()
    with httpx.Client(timeout=5) as client:
        assert route_version(client, c) == old + 2  # already when it reports ready
    send_and_check([c], range(20_000, 20_005), key_prefix, sink, old + 2, V1_LEGS)
    history = a.admin("GET", "/admin/routes/versions").json()["versions"]
    assert [(v["version"], v["note"]) for v in history[-2:]] == [
        (old + 1, "orders to d2 and d3"), (old + 2, f"rollback to version {old}")]


def test_refused_deploy_leaves_the_running_version(rabbit: Any, sink: Any,
                                                   daemon_factory: Any, tmp_path: Path) -> None:
    a = daemon_factory(three_destinations(rabbit, sink), {"r.yaml": V1}).start()
    before = a.admin("GET", "/admin/routes").json()["version"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "r.yaml").write_text("routes:\n  - name: x\n    match: {type: order}\n"
                                "    to: [nowhere]\n")
    r = esb(a, "routes", "deploy", str(bad))
    assert r.returncode == 2
    assert "r.yaml:3" in r.stderr and "r.yaml:4" in r.stderr and "nowhere" in r.stderr
    assert a.admin("GET", "/admin/routes").json()["version"] == before
    versions = a.admin("GET", "/admin/routes/versions").json()["versions"]
    assert [v["version"] for v in versions] == [before], "a refused deploy was stored"
    send_and_check([a], range(1, 4), rabbit.prefix, sink, before, V1_LEGS)


def test_deploy_says_when_an_instance_cannot_run_the_new_version(
        rabbit: Any, sink: Any, daemon_factory: Any, tmp_path: Path) -> None:
    """Instance b's configuration lacks d3, so V2 does not compile there: the deploy is
    stored and a switches, b keeps V1 and says why, and the command exits 1 naming b —
    instances never drift apart silently. Rolling back brings them together again."""
    full = three_destinations(rabbit, sink)
    partial = {**full, "destinations": {d: c for d, c in full["destinations"].items()
                                        if d != "d3"}}
    a = daemon_factory(full, {"r.yaml": V1}, name="a").start()
    b = daemon_factory(partial, {"r.yaml": V1}, name="b").start()
    before = a.admin("GET", "/admin/routes").json()["version"]
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "r.yaml").write_text(V2)
    r = esb(a, "routes", "deploy", str(v2))
    assert r.returncode == 1, r.stdout + r.stderr
    b_id = b.admin("GET", "/admin/status").json()["instance"]
    assert f"{b_id}: CANNOT run version {before + 1}" in r.stderr
    assert "d3" in r.stderr and "not every instance can run it" in r.stderr
    assert "running version" in r.stdout
    assert a.admin("GET", "/admin/routes").json()["version"] == before + 1
    assert b.admin("GET", "/admin/routes").json()["version"] == before
    back = esb(a, "routes", "rollback")
    assert back.returncode == 0, back.stderr
    assert a.admin("GET", "/admin/routes").json()["version"] == before + 2
    assert b.admin("GET", "/admin/routes").json()["version"] == before + 2


def test_a_starting_instance_never_routes_by_its_own_files(
        rabbit: Any, sink: Any, daemon_factory: Any, tmp_path: Path) -> None:
    """V2 is deployed; an instance then starts with V1's files. From the moment its port
    opens, every message it accepts goes by V2: until the store's version is installed, it
    answers 503 (retry), never routing by the files it happened to start with."""
    a = daemon_factory(three_destinations(rabbit, sink), {"r.yaml": V1}, name="a").start()
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "r.yaml").write_text(V2)
    assert esb(a, "routes", "deploy", str(v2)).returncode == 0
    deployed = a.admin("GET", "/admin/routes").json()["version"]
    late = daemon_factory(three_destinations(rabbit, sink), {"r.yaml": V1}, name="late")
    late.start(wait=False)
    accepted: list[int] = []
    refused = 0
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=5) as c:
        seq = 0
        while len(accepted) < 20:
            assert time.monotonic() < deadline, f"accepted {len(accepted)}, refused {refused}"
            seq += 1
            try:
                r = post_order(c, late, seq, "late")
            except httpx.TransportError:
                time.sleep(0.01)  # not listening yet
                continue
            if r.status_code == 503:
                refused += 1
                assert r.headers.get("retry-after"), r.text
                continue
            assert r.status_code == 202, r.text
            accepted.append(seq)
    got = wait_delivered(sink, accepted)
    for s in accepted:
        assert_routed_by(got[s], deployed, V2_LEGS, f"message {s} of the starting instance")
    print(f"\nstarting instance: {refused} request(s) answered 503 before the deployed "
          f"version {deployed} was installed; {len(accepted)} accepted, all routed by it")
