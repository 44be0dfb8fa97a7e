"""Pass-through on a three-node RabbitMQ cluster with quorum queues against one node, in one run.

    python bench/cluster_bench.py [--count N] [--warmup N] [--repeat N] [--url AMQP_URL]

Starts a private three-node cluster on this machine (the test suite's
``tests/esbtest/cluster.py``: own node names, ports and folders, never the shared broker) and
an HTTP sink, then runs the ``passthrough-1KiB`` scenario of ``bench/run.py`` (one esb daemon,
one worker, REST in → one REST destination) against, interleaved per round:

* ``single``   — the broker at ``--url`` (one node, classic queues: esb's one-node default);
* ``node1``    — the cluster's first node alone (classic queues, same install as the cluster);
* ``cluster3`` — all three nodes in ``bus.url`` (quorum queues, replicated streams: esb's
  cluster default).

Prints msg/s end to end, p50/p99 latency and each row's ratio to ``single``; each row of the
final table is the round with the median rate. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # esbtest.cluster: one home for the nodes

from esbtest.cluster import Cluster, available  # noqa: E402
from harness import scenarios  # noqa: E402
from harness.procs import Sink  # noqa: E402
from harness.runner import Options, Result, run_scenario  # noqa: E402

DEFAULT_URL = os.environ.get("ESB_TEST_BUS_URL", "amqp://guest:guest@127.0.0.1:5672/")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=DEFAULT_URL, help="the single node (default: %(default)s)")
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args(argv)
    why = available()
    if why:
        raise SystemExit(f"cannot start a private cluster: {why}")
    work = Path(tempfile.mkdtemp(prefix="esb-cluster-bench-"))
    cluster = Cluster(work / "rabbit")
    sink = Sink(work)
    runs: dict[str, list[Result]] = {}
    try:
        print("starting a private three-node cluster ...", flush=True)
        cluster.start()
        sink.start()
        targets = {"single": args.url, "node1": cluster.nodes[0].url,
                   "cluster3": ",".join(cluster.urls)}
        base = scenarios.passthrough(scenarios.KIB)
        for rnd in range(args.repeat):
            for name, url in targets.items():
                run_id = uuid.uuid4().hex[:8]
                opts = Options(bus_url=url, run_id=run_id, workdir=work / run_id,
                               warmup=args.warmup, count=args.count,
                               concurrency=args.concurrency)
                scn = dataclasses.replace(base, name=f"pt-{name}", target=None)
                res = run_scenario(scn, opts, sink)
                runs.setdefault(name, []).append(res)
                print(f"round {rnd + 1} {name:<9} {res.rate:8.0f} msg/s  p50 "
                      f"{res.p50_ms:7.1f} ms  p99 {res.p99_ms:7.1f} ms  "
                      f"lost {res.sent - res.received}  dupes {res.dupes}", flush=True)
        medians = {name: sorted(rs, key=lambda r: r.rate)[len(rs) // 2]
                   for name, rs in runs.items()}
        ref = medians["single"].rate
        print(f"\nmedian of {args.repeat} rounds, {args.count} msgs of 1 KiB, "
              f"{args.concurrency} in flight, one daemon process")
        print(f"{'target':<10} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}  spread")
        for name, res in medians.items():
            rates = [r.rate for r in runs[name]]
            spread = f"{min(rates):.0f}..{max(rates):.0f}" if len(rates) > 1 else ""
            print(f"{name:<10} {res.rate:8.0f} {res.p50_ms:8.1f} {res.p99_ms:8.1f} "
                  f"{res.rate / ref:6.2f}  {spread}  (stdev "
                  f"{statistics.pstdev(rates):.0f})")
    finally:
        sink.stop()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
