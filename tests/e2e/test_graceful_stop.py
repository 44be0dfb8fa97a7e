"""SIGTERM drains: in-flight deliveries finish and are acknowledged, the rest stay queued, and
the process exits 0 — also while a sender is still posting."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from esbtest.sink import answer_after
from esbtest.waiting import wait_until
from test_rest_flow import ROUTES, accepted, flow_config, post_many

from esb.bus.broker.connection import kombu_connection
from esb.bus.envelope import Envelope


def test_sigterm_finishes_in_flight_work_and_exits_zero(rabbit: Any, sink: Any,
                                                        daemon_factory: Any) -> None:
    sink.status_for = answer_after(0.3)
    d = daemon_factory(flow_config(rabbit.bus("out"), sink.url, concurrency=4), ROUTES).start()
    results = asyncio.run(post_many(d.url, 40))
    assert len(accepted(results)) == 40
    assert sink.wait_for(4, timeout=20)
    t0 = time.monotonic()
    assert d.stop(timeout=40) == 0
    stopped_in = time.monotonic() - t0
    delivered = sink.keys()
    assert 4 <= len(delivered) < 40, "some work should have been left on the queue"
    assert "stopped" in d.log() and '"drained": true' in d.log()
    sink.status_for = None  # slow answers were for the SIGTERM to land mid-delivery
    d.start()
    assert sink.wait_for(40, timeout=60), d.log()
    assert_no_duplicate_pending(d, rabbit, sink)
    dupes = {k: c for k, c in sink.keys().items() if c > 1}
    print(f"\nstopped in {stopped_in:.2f}s with {len(delivered)} delivered; "
          f"after restart 40 delivered, duplicates {len(dupes)}")
    assert not dupes, "a delivery finished during the drain was delivered again"


def assert_no_duplicate_pending(d: Any, rabbit: Any, sink: Any) -> None:
    """Stop ``d`` (it drains: what it had started arrives) and look at what is left in its
    queue: a message whose key the destination already has would be a duplicate still to
    come. This replaces waiting a while to see whether one arrives."""
    assert d.stop(timeout=40) == 0
    with kombu_connection(rabbit.url) as conn:
        channel = conn.default_channel
        queue = rabbit.topology().queue("dest.out")
        left: list[str | None] = []
        while (message := channel.basic_get(queue)) is not None:  # un-acked: put back
            left.append(Envelope.from_json(message.body).key)
    again = sorted(k for k in left if k in sink.unique())
    assert not again, f"delivered, and queued to be delivered again: {again[:10]}"


@dataclass
class Sender:
    """Posts one order after another (each with a key of its own, never retried) until told
    to stop, recording every answer — a status, or the transport error — and when it came."""

    url: str
    outcomes: dict[str, tuple[float, int | str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                key = f"live-{i}"
                try:
                    r = client.post(f"{self.url}/in/shop/order.created",
                                    content=orjson.dumps({"n": i}),
                                    headers={"Content-Type": "application/json",
                                             "Idempotency-Key": key})
                    self.outcomes[key] = (time.monotonic(), r.status_code)
                except httpx.TransportError as exc:
                    self.outcomes[key] = (time.monotonic(), type(exc).__name__)
                    time.sleep(0.01)  # the daemon is gone: do not spin
                i += 1

    def keys(self, answer: int) -> set[str]:
        return {k for k, (_, a) in self.outcomes.items() if a == answer}

    def refused_after(self, t: float) -> int:
        return sum(1 for at, a in self.outcomes.values() if at >= t and a != 202)


def test_sigterm_while_a_sender_keeps_posting_loses_no_accepted_message(
        rabbit: Any, sink: Any, daemon_factory: Any) -> None:
    """SIGTERM arrives while orders keep coming: each answered 202 (before or during the stop)
    is delivered once the daemon is back; the others got 503 or a connection error."""
    sink.status_for = answer_after(0.05)
    d = daemon_factory(flow_config(rabbit.bus("out"), sink.url, concurrency=4), ROUTES).start()
    sender = Sender(d.url)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(sender.keys(202)) < 150:
            assert time.monotonic() < deadline and thread.is_alive(), "the sender stalled"
            time.sleep(0.05)
        sigterm = time.monotonic()
        code = d.stop(timeout=40)
        stopped = time.monotonic()
        # a few more attempts against the stopped daemon
        wait_until(lambda: sender.refused_after(stopped) >= 3, "posts after the stop",
                   timeout=30)
    finally:
        sender.stop.set()
        thread.join(15)
    assert code == 0 and '"drained": true' in d.log()
    answers = {a for _, a in sender.outcomes.values()}
    statuses = {a for a in answers if isinstance(a, int)}
    assert statuses <= {202, 503}, statuses  # the rest are connection errors
    assert sender.refused_after(sigterm) > 0, "the sender was not posting during the stop"
    accepted = sender.keys(202)
    late = sum(1 for at, a in sender.outcomes.values() if sigterm <= at <= stopped and a == 202)

    sink.status_for = None  # slow answers were for the SIGTERM to land mid-delivery
    d.start()
    deadline = time.monotonic() + 60
    while not accepted <= sink.unique():
        assert time.monotonic() < deadline, f"lost: {sorted(accepted - sink.unique())[:10]}"
        time.sleep(0.2)
    assert_no_duplicate_pending(d, rabbit, sink)
    counts = sink.keys()
    assert set(counts) <= set(sender.outcomes), "only what was posted is delivered"
    dupes = {k: c for k, c in counts.items() if c > 1}
    print(f"\nSIGTERM under load: {len(accepted)} accepted ({late} while stopping), "
          f"{sender.refused_after(sigterm)} refused after SIGTERM ({answers - {202}}), "
          f"{len(counts)} delivered after restart, duplicates {len(dupes)}")
    assert not dupes, "a delivery finished during the drain was delivered again"


def test_sighup_rereads_the_configuration(sink: Any, daemon_factory: Any) -> None:
    import signal

    import yaml

    d = daemon_factory(flow_config({"url": "embedded"}, sink.url), ROUTES).start()
    path = d.root / "config" / "esb.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["destinations"]["out"]["delivery"]["concurrency"] = 7
    path.write_text(yaml.safe_dump(cfg))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "configuration re-read" not in d.log():
        time.sleep(0.1)
    assert '"restart_needed_for": ["destinations"]' in d.log()
    path.write_text("bus: [broken\n")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "configuration refused" not in d.log():
        time.sleep(0.1)
    assert "configuration refused" in d.log()
    assert d.admin("GET", "/admin/status").status_code == 200  # still serving
    assert d.stop() == 0
