"""A daemon whose broker is down: the reason is said, each attempt is logged once, SIGTERM
does not wait out the back-off, and ``esb status`` says it is disconnected (exit 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from esbtest.logs import log_events, on_bus_link
from esbtest.waiting import wait_until

pytestmark = pytest.mark.rabbitmq

ROUTES = {"r.yaml": {"routes": [{"name": "all", "to": ["out"]}]}}


def _config(url: str, prefix: str, sink_url: str) -> dict[str, Any]:
    return {"bus": {"url": url, "prefix": prefix},
            "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
            "destinations": {"out": {"adapter": "rest", "url": sink_url + "/x"}}}


def _status(daemon: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ESB_ADMIN_URL": daemon.url, "ESB_ADMIN_TOKEN": daemon.token}
    return subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "status"], env=env,
                          capture_output=True, text=True, timeout=60)


def _connected(daemon: Any) -> bool:
    """What ``esb status`` reads, asked over HTTP: polling the command itself would start a
    Python process every 0.1 s."""
    return bool(daemon.admin("GET", "/admin/status").json()["bus"]["connected"])


def _bus_attempts(daemon: Any) -> list[dict[str, Any]]:
    """The bus link's failed attempts (its name is ``esb <instance>``; the other links add
    what they are: ``esb presence ...``)."""
    return [e for e in log_events(daemon, "reconnect failed") if on_bus_link(e)]


def test_status_exits_3_and_attempts_say_why_while_the_bus_is_lost(
        rabbit: Any, sink: Any, proxy: Any, daemon_factory: Any) -> None:
    d = daemon_factory(_config(proxy.amqp_url, rabbit.prefix, sink.url), ROUTES)
    rabbit.destinations.add("out")
    d.start()
    r = _status(d)
    assert r.returncode == 0, r.stderr
    proxy.stop_accepting()
    proxy.cut()
    wait_until(lambda: not _connected(d), "the bus lost", timeout=30, daemon=d)
    r = _status(d)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "DISCONNECTED" in r.stdout
    assert "esb: the daemon at" in r.stderr and "not connected to its bus" in r.stderr
    wait_until(lambda: len(_bus_attempts(d)) >= 2, "two reconnect attempts", timeout=30,
               daemon=d)
    for e in _bus_attempts(d):
        assert "Connection refused" in e["error"], e  # the reason, never empty
    proxy.start_accepting()
    wait_until(lambda: _connected(d), "reconnected", timeout=60, daemon=d)
    r = _status(d)
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_a_daemon_starting_without_its_broker_logs_each_attempt_once_and_stops_at_once(
        rabbit: Any, sink: Any, proxy: Any, daemon_factory: Any) -> None:
    proxy.stop_accepting()  # the broker is down from the start
    d = daemon_factory(_config(proxy.amqp_url, rabbit.prefix, sink.url), ROUTES)
    d.start(wait=False)
    # wait until the bus link sits in a long back-off (8 s or more: a stop, interpreter exit
    # included, takes well under that even on a busy machine)
    wait_until(lambda: any((e.get("retry_in") or 0) >= 8 for e in _bus_attempts(d)),
               "a back-off of 8 s", timeout=60, daemon=d)
    events = log_events(d)
    first = [e for e in events if e.get("event") == "bus not reachable yet; retrying until it is"]
    assert len(first) == 1 and "Connection refused" in first[0]["error"], d.log()
    attempts = _bus_attempts(d)
    for e in attempts:
        assert "Connection refused" in e["error"], e  # never an empty reason
    # one line per attempt: the daemon's own loop does not retry the bus on top of the link's
    assert not [e for e in events if e.get("event") == "bus not reachable yet"]
    backoff = max(e["retry_in"] for e in attempts)
    assert d.proc is not None
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    code = d.proc.wait(60)
    took = time.monotonic() - started
    assert code == 0, d.log()
    assert took < backoff, (took, backoff, d.log())  # it did not wait out the back-off
