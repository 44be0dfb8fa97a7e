"""SIGTERM drains: in-flight deliveries finish and are acknowledged, the rest stay queued, and
the process exits 0."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from esbtest.sink import answer_after
from test_rest_flow import ROUTES, accepted, flow_config, post_many


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
    d.start()
    assert sink.wait_for(40, timeout=60), d.log()
    time.sleep(1)
    dupes = {k: c for k, c in sink.keys().items() if c > 1}
    print(f"\nstopped in {stopped_in:.2f}s with {len(delivered)} delivered; "
          f"after restart 40 delivered, duplicates {len(dupes)}")
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
