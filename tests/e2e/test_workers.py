"""``esb run --workers N``: one daemon as N worker processes on one port, on the real
RabbitMQ — the work is shared, ``/metrics`` shows the whole daemon from any worker, SIGTERM
drains every worker, a killed worker is replaced, and what cannot run is refused up front."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from esbtest import cli
from esbtest.daemon import DaemonProcess
from esbtest.logs import log_events
from esbtest.sink import answer_after
from esbtest.waiting import until
from prometheus_client.parser import text_string_to_metric_families
from test_rest_flow import ROUTES, accepted, check_exactly_once, flow_config, post_many

from esb.bus.broker.base import destination_address
from esb.bus.runtime.presence import Presence

ESB = [sys.executable, "-m", "esb.bus.cli.main"]


# -- helpers ---------------------------------------------------------------------------------

def wait_until(check: Callable[[], Any], timeout: float, what: str, d: DaemonProcess) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout}s\n{d.log(12000)}")


def events(d: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """Every JSON log line of the daemon (supervisor and workers) whose event is ``name``."""
    return log_events(d, name)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def children(pid: int) -> set[int]:
    """Live child processes of ``pid``."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[1] == pid and st[0] != "Z":
                out.add(int(entry.name))
    return out


def start_workers(daemon_factory: Any, rabbit: Any, sink: Any, n: int = 2,
                  **delivery: Any) -> tuple[DaemonProcess, set[int]]:
    """A daemon with ``--workers n`` on the test's prefix, once every worker is running;
    returns it and its worker pids."""
    d: DaemonProcess = daemon_factory(flow_config(rabbit.bus("out"), sink.url, **delivery),
                                      ROUTES, run_args=["--workers", str(n)]).start()
    assert d.proc is not None
    running = wait_until(lambda: len(events(d, "esb running")) >= n and events(d, "esb running"),
                         30, f"{n} workers running", d)
    pids = children(d.proc.pid)
    assert len(pids) == n, pids
    assert {e["instance"].rsplit("-", 1)[1] for e in running} == {str(p) for p in pids}
    assert sorted(e["worker"] for e in running) == list(range(1, n + 1))
    return d, pids


def status_json(d: DaemonProcess) -> dict[str, Any]:
    """``esb status --json`` against the daemon's shared port (in this process)."""
    out = cli.run("--url", d.url, "--token", d.token, "status", "--json")
    assert out.returncode == 0, out.stderr
    return orjson.loads(out.stdout)


def scrape(d: DaemonProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` on a fresh connection (so any worker may answer): sample → value."""
    text = httpx.get(f"{d.url}/metrics", timeout=10, headers={"Connection": "close"}).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def prompt_heartbeats(rabbit: Any, instances: int) -> None:
    """Join the daemon's presence as a newcomer until ``instances`` instances answered, then
    leave: every instance answers a newcomer with a heartbeat at once, so ``esb status`` shows
    each worker's counts as they are now rather than up to 5 s ago (the heartbeat interval)."""
    async def join_and_leave() -> None:
        probe = Presence(rabbit.url, rabbit.prefix, f"probe-{uuid.uuid4().hex[:8]}", dict)
        await probe.start()
        try:
            await until(lambda: len(probe.instances()) > instances, timeout=10)
        finally:
            await probe.close()  # says goodbye: the workers drop it at once

    asyncio.run(join_and_leave())


def queued(rabbit: Any, destination: str) -> dict[str, int]:
    """Messages waiting on the broker for ``destination``: in its queue, and waiting out a
    retry backoff (``retrying``)."""
    return rabbit.topology().depths(rabbit.url, [destination_address(destination)])


def gone(pids: set[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return not any(alive(p) for p in pids)


# -- the work is shared, the metrics are whole -------------------------------------------------

def test_two_workers_share_the_port_and_the_work(rabbit: Any, sink: Any,
                                                 daemon_factory: Any) -> None:
    d, pids = start_workers(daemon_factory, rabbit, sink)
    # Enough for both workers to take some: the broker hands a queue's messages to its
    # consumers in turn, and 32 concurrent senders reach both workers' accept().
    n = 100
    results = asyncio.run(post_many(d.url, n, concurrency=32))
    assert accepted(results) == {f"order-{i}" for i in range(n)}
    assert sink.wait_for(n, timeout=60), f"{len(sink.unique())}/{n} arrived\n{d.log()}"

    # Both workers are instances of the bus and both delivered.
    def shared() -> dict[str, Any] | None:
        prompt_heartbeats(rabbit, 2)
        st = status_json(d)
        inst = st["instances"]
        counts = [i["destinations"]["out"]["delivered"] for i in inst]
        return st if len(inst) == 2 and sum(counts) == n and all(counts) else None

    st = wait_until(shared, 30, "both workers in esb status with every delivery", d)
    assert {i["pid"] for i in st["instances"]} == pids
    print("\ndelivered per worker:",
          {i["pid"]: i["destinations"]["out"]["delivered"] for i in st["instances"]})

    # Whichever worker answers, /metrics is the whole daemon. (Each worker copies its gauges
    # into the shared files every second: until a worker's next copy, a scrape answered by
    # the other shows it as it was, e.g. still connecting or delivering.)
    def gauges_current() -> bool:
        m = scrape(d)
        return (m[("esb_bus_connected", ())] == 1
                and m[("esb_in_flight", (("destination", "out"),))] == 0)

    wait_until(gauges_current, 10, "every worker's gauges copied since", d)
    answered = set()
    for _ in range(12):
        m = scrape(d)
        assert m[("esb_received_total", (("source", "shop"),))] == n
        assert m[("esb_delivered_total", (("destination", "out"),))] == n
        assert m[("esb_end_to_end_seconds_count", (("destination", "out"),))] == n
        assert m[("esb_in_flight", (("destination", "out"),))] == 0
        assert m[("esb_bus_connected", ())] == 1
        assert m[("esb_route_version", ())] == 1
        answered.add(httpx.get(f"{d.url}/admin/status", timeout=10,
                               headers={"Authorization": f"Bearer {d.token}",
                                        "Connection": "close"}).json()["instance"])
    print("admin answered by:", sorted(answered))

    assert d.proc is not None
    assert d.stop() == 0
    assert gone(pids), "a worker outlived its supervisor"
    assert len(events(d, "stopped")) == 2
    # Stopped (drained) with nothing left on the broker: no duplicate can still come.
    assert queued(rabbit, "out") == {"dest.out": 0, "retrying": 0}
    check_exactly_once(sink, n, results)


def _owners(pids: set[int], ports: set[int]) -> dict[int, int]:
    """Which worker holds the server side of each client connection (by the client's port):
    the socket inodes in each worker's descriptor table, matched against /proc/net/tcp."""
    inode_pid: dict[str, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inode_pid[link[8:-1]] = pid
    owners: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port in ports and fields[9] in inode_pid:
                owners[remote_port] = inode_pid[fields[9]]
    return owners


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balances on Linux")
def test_a_burst_of_connections_is_spread_over_the_workers(rabbit: Any, sink: Any,
                                                          daemon_factory: Any) -> None:
    """A client that opens its keep-alive pool at once (a load balancer's, say) is served by
    every worker: each listens on a socket of its own and the kernel spreads connections
    over them by a hash of their addresses. (On one socket shared by the workers, the bench's
    load generator's 64 connections went 61 to one worker and 4 to the other: whichever
    wakes first accepts every connection waiting. This test's burst does not reproduce that
    reliably; it guards the spread and that every connection is served.)"""
    d, pids = start_workers(daemon_factory, rabbit, sink)
    host, port = d.url.removeprefix("http://").rsplit(":", 1)
    # all at once, as a pool opens: connect without waiting, then wait for all
    clients = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(64)]
    for c in clients:
        c.setblocking(False)
        c.connect_ex((host, int(port)))
    for c in clients:
        select.select([], [c], [], 10)
        c.setblocking(True)
        c.settimeout(10)
    try:
        ports = {c.getsockname()[1] for c in clients}

        def all_taken() -> dict[int, int] | None:
            found = _owners(pids, ports)
            return found if len(found) == 64 else None

        owners = wait_until(all_taken, 10, "every connection taken by a worker", d)
        per_worker = {pid: list(owners.values()).count(pid) for pid in pids}
        print("\nconnections per worker:", per_worker)
        # by a hash of each connection's addresses: fewer than 16 of 64 on one worker happens
        # about once in twenty thousand runs
        assert min(per_worker.values()) >= 16, per_worker
        for c in clients:  # and each is served
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert c.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for c in clients:
            c.close()
    assert d.stop() == 0


def test_sigterm_drains_every_worker_and_exits_zero(rabbit: Any, sink: Any,
                                                    daemon_factory: Any) -> None:
    # 4 deliveries at a time of 1 s each: the 40 take ~10 s, far longer than the SIGHUP's
    # round through both workers, so the stop comes with work still queued.
    sink.status_for = answer_after(1.0)
    d, pids = start_workers(daemon_factory, rabbit, sink, concurrency=2)
    results = asyncio.run(post_many(d.url, 40))
    assert len(accepted(results)) == 40
    assert sink.wait_for(4, timeout=20)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)  # forwarded: every worker re-reads its configuration
    wait_until(lambda: len(events(d, "SIGHUP: configuration re-read")) == 2, 10,
               "SIGHUP forwarded to both workers", d)
    assert d.stop(timeout=60) == 0
    assert gone(pids), "a worker outlived its supervisor"
    metrics_dir = events(d, "esb supervisor running")[0]["metrics_dir"]
    assert not Path(metrics_dir).exists(), "the metrics directory outlived the supervisor"
    stopped = events(d, "stopped")
    assert len(stopped) == 2 and all(e["drained"] for e in stopped), d.log()
    assert {e["exit_code"] for e in events(d, "worker exited")} == {0}
    delivered = len(sink.unique())
    assert delivered < 40, "some work should have been left on the queue"
    # The rest is still queued: a new run delivers it, nothing twice. The destination now
    # answers at once (the slow answers were there to have deliveries in flight at the stop).
    sink.status_for = None
    d.start()
    assert sink.wait_for(40, timeout=60), d.log()
    assert d.stop() == 0
    # Drained, and nothing left on the broker: a delivery that was to come again would be.
    assert queued(rabbit, "out") == {"dest.out": 0, "retrying": 0}
    assert all(c == 1 for c in sink.keys().values()), "a drained delivery came again"


def test_sigterm_while_a_worker_is_still_starting_exits_zero(rabbit: Any, sink: Any,
                                                             daemon_factory: Any) -> None:
    # Worker 2 starts once worker 1 runs; stopped at that moment it is still loading (no
    # signal handlers yet, nothing taken): that is a clean stop, not a failure.
    for attempt in range(3):
        d: DaemonProcess = daemon_factory(flow_config(rabbit.bus("out"), sink.url), ROUTES,
                                          run_args=["--workers", "2"],
                                          name=f"try{attempt}").start()
        assert d.proc is not None
        wait_until(lambda d=d: events(d, "worker started")[1:], 30, "worker 2 started", d)
        if not [e for e in events(d, "esb running") if e["worker"] == 2]:
            break
        # the test was descheduled for a whole start: worker 2 runs already, try again
        assert d.stop(timeout=60) == 0, d.log()
    else:
        pytest.fail("worker 2 was running each time before the test could stop it")
    assert d.stop(timeout=60) == 0, d.log()
    assert len(events(d, "worker exited")) == 2


def test_a_killed_worker_is_replaced_and_messages_keep_flowing(rabbit: Any, sink: Any,
                                                               daemon_factory: Any) -> None:
    sink.status_for = answer_after(0.005)
    d, pids = start_workers(daemon_factory, rabbit, sink)
    assert d.proc is not None
    victim = min(pids)

    # The kill lands a fifth of the way into the load: the rest is sent while one worker is
    # dead and then replaced.
    async def load_and_kill() -> dict[int, httpx.Response | Exception]:
        task = asyncio.create_task(post_many(d.url, 150, concurrency=16))
        while len(sink.unique()) < 30:
            await asyncio.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        return await task

    first = accepted(asyncio.run(load_and_kill()))
    assert len(first) >= 30
    assert gone({victim})
    replaced = wait_until(lambda: len(events(d, "esb running")) >= 3, 30,
                          "a replacement worker running", d)
    assert replaced
    exited = events(d, "worker exited unexpectedly: restarting")
    assert [e["pid"] for e in exited] == [victim] and exited[0]["exit_code"] == -9
    now = children(d.proc.pid)
    assert len(now) == 2 and victim not in now and now & pids == pids - {victim}

    second = accepted(asyncio.run(post_many(d.url, 50, start=1000)))
    assert second == {f"order-{i}" for i in range(1000, 1050)}, "refused after the restart"
    want = first | second
    wait_until(lambda: want <= sink.unique(), 60, "every accepted message delivered", d)
    print(f"\naccepted {len(first)}/150 around the kill, then 50/50; all delivered, "
          f"duplicates {sum(c - 1 for c in sink.keys().values())}")
    # The dead worker's counts stay in the totals (its counter file is kept): every delivery
    # is counted, the dead worker's included. (A delivery it made but had not counted when
    # killed was not acked either: another worker makes it again and counts it — moments
    # after the destination has it, hence the wait. The accepted count has no such second
    # chance: a request published but not yet counted when the kill came is answered by
    # another worker as a replay, counted nowhere.)
    def counted() -> bool:
        m = scrape(d)
        return m[("esb_delivered_total", (("destination", "out"),))] >= len(sink.unique())

    wait_until(counted, 30, "every delivery counted", d)
    assert d.stop() == 0
    assert gone(now)


def test_workers_stop_when_their_supervisor_is_killed(rabbit: Any, sink: Any,
                                                      daemon_factory: Any) -> None:
    d, pids = start_workers(daemon_factory, rabbit, sink)
    metrics_dir = events(d, "esb supervisor running")[0]["metrics_dir"]
    try:
        d.kill()  # SIGKILL: no forwarding, no clean-up
        assert gone(pids, timeout=30), f"orphaned workers kept running\n{d.log()}"
        assert len(events(d, "supervisor gone: stopping this worker")) == 2
        assert all(e["drained"] for e in events(d, "stopped"))
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)  # left behind by the SIGKILL


# -- refused up front ---------------------------------------------------------------------------

def run_cli(d: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``esb run ARGS`` in ``d``'s folder with its environment (the admin token it names)."""
    return subprocess.run([*ESB, "run", *args], cwd=d.root, env=d.env, capture_output=True,
                          text=True, timeout=60)


def test_embedded_bus_with_workers_is_refused(sink: Any, daemon_factory: Any) -> None:
    d = daemon_factory(flow_config({"url": "embedded"}, sink.url), ROUTES)
    out = run_cli(d, "--workers", "2")
    assert out.returncode == 2, out.stderr
    assert "--workers needs the RabbitMQ bus" in out.stderr
    assert "embedded bus lives inside one process" in out.stderr


def test_bad_worker_count_is_a_usage_error(sink: Any, daemon_factory: Any) -> None:
    d = daemon_factory(flow_config({"url": "embedded"}, sink.url), ROUTES)
    out = run_cli(d, "--workers", "0")
    assert out.returncode == 2 and "not a positive number of workers" in out.stderr
    out = subprocess.run([*ESB, "run"], cwd=d.root, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "ESB_WORKERS": "many"})
    assert out.returncode == 2 and "not a positive number of workers" in out.stderr


def test_config_error_is_reported_as_without_workers(rabbit: Any, sink: Any,
                                                     daemon_factory: Any) -> None:
    cfg = flow_config(rabbit.bus("out", prefetch=0), sink.url, concurrency=0)
    d = daemon_factory(cfg, ROUTES)
    single = run_cli(d)
    several = run_cli(d, "--workers", "2")
    assert single.returncode == several.returncode == 2
    assert "esb.yaml:" in single.stderr and "prefetch" in single.stderr
    assert several.stderr == single.stderr


def test_a_worker_that_cannot_start_stops_the_supervisor(rabbit: Any, sink: Any,
                                                         daemon_factory: Any) -> None:
    routes = {"bad.yaml": {"routes": [{"name": "x", "from": ["nowhere"], "to": ["out"]}]}}
    d: DaemonProcess = daemon_factory(flow_config(rabbit.bus("out"), sink.url), routes,
                                      run_args=["--workers", "2"])
    d.start(wait=False)
    assert d.proc is not None
    code = d.proc.wait(60)
    assert code == 2, d.log()
    assert "bad.yaml:" in d.log() and "nowhere" in d.log()
    assert events(d, "worker exited while starting: stopping the others")
    started = events(d, "worker started")
    assert len(started) == 1, "no restart loop, and the others never started"
    assert gone({e["pid"] for e in started})


def test_a_taken_port_is_reported_before_any_worker_starts(rabbit: Any, sink: Any,
                                                           daemon_factory: Any) -> None:
    d = daemon_factory(flow_config(rabbit.bus("out"), sink.url), ROUTES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", d.port))
        taken.listen(1)
        out = run_cli(d, "--workers", "2")
    assert out.returncode == 1, out.stderr
    assert f"cannot listen on 127.0.0.1:{d.port}" in out.stderr
    assert "worker started" not in out.stderr
