"""Multiprocess metrics: a forked process gets files of its own, and every process's updates
count. Run in a fresh interpreter: prometheus_client picks its value class when first imported,
from ``PROMETHEUS_MULTIPROC_DIR``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os, sys
    from esb.bus.runtime.metrics import Metrics
    m = Metrics(sys.argv[1])
    m.delivered.labels("d").inc()
    child = os.fork()
    if child == 0:
        m.delivered.labels("d").inc(2)
        os._exit(0)
    os.waitpid(child, 0)
    m.delivered.labels("d").inc(4)
    print(child)
    sys.stdout.write(m.render().decode())
""")


def test_a_forked_process_writes_its_own_files_and_every_update_counts(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    child, _, rendered = out.partition("\n")
    assert 'esb_delivered_total{destination="d"} 7.0' in rendered
    counters = sorted(p.name for p in tmp_path.glob("counter_*"))
    assert f"counter_{child}.db" in counters and len(counters) == 2, counters


TALLY = textwrap.dedent("""
    import asyncio, json, sys
    from esb.bus.runtime.metrics import FLUSH_INTERVAL, Metrics

    def rendered(m):
        return {line.rpartition(" ")[0]: line.rpartition(" ")[2]
                for line in m.render().decode().splitlines() if not line.startswith("#")}

    def on_disk(m):  # what another worker's render reads: the shared files only
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        registry = CollectorRegistry()
        MultiProcessCollector(registry, m.multiprocess_dir)
        return generate_latest(registry).decode()

    async def main():
        m = Metrics(sys.argv[1])
        delivered = m.child(m.routed, "r", "d")
        latency = m.child(m.delivery_latency, "d")
        for seconds in (0.0005, 0.001, 0.003, 0.003, 40.0):
            delivered.inc()
            latency.observe(seconds)
        delivered.inc(2)
        assert 'esb_routed_total{destination="d",route="r"} 0.0' in on_disk(m)  # not yet
        await asyncio.sleep(FLUSH_INTERVAL * 3)
        assert 'esb_routed_total{destination="d",route="r"} 7.0' in on_disk(m), on_disk(m)
        delivered.inc()
        got = rendered(m)  # this worker's own render writes first
        assert got['esb_routed_total{destination="d",route="r"}'] == "8.0", got
        m.child(m.delivered, "d").inc()  # counted before an ack: written at once
        assert 'esb_delivered_total{destination="d"} 1.0' in on_disk(m), on_disk(m)
        print(json.dumps({k: v for k, v in got.items() if k.startswith("esb_delivery_seconds")}))

    asyncio.run(main())
""")


def test_hot_path_updates_are_written_in_batches_and_count_the_same(tmp_path: Path) -> None:
    """The hot path's counters and histograms (``Metrics.child``) are written to the shared
    files every FLUSH_INTERVAL, not per update: another worker's scrape sees them that much
    later, this worker's at once, and the counts are what per-update writes give."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", TALLY, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    bucket = 'esb_delivery_seconds_bucket{destination="d",le="%s"}'
    assert got[bucket % "0.001"] == "2.0"  # 0.0005 and 0.001 (a bound is inside its bucket)
    assert got[bucket % "0.005"] == "4.0"
    assert got[bucket % "30.0"] == "4.0" and got[bucket % "+Inf"] == "5.0"
    assert got['esb_delivery_seconds_count{destination="d"}'] == "5.0"
    assert float(got['esb_delivery_seconds_sum{destination="d"}']) == 40.0075
