"""Multiprocess metrics: a forked process gets files of its own, and every process's updates
count. Run in a fresh interpreter: prometheus_client picks its value class when first imported,
from ``PROMETHEUS_MULTIPROC_DIR``."""

from __future__ import annotations

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
