"""End-to-end benchmark of esb against the raw ceiling, all in one run.

    python bench/run.py [--quick] [--json] [--soak] [--scenario NAME ...] [--url AMQP_URL]

Starts an HTTP sink, then for each scenario an esb daemon (its own project folder and bus
prefix) or the ceiling relay (bench/ceiling.py), warms it up, sends a fixed number of messages
with N in flight from a separate load-generator process and waits until the sink has them all.
Prints msg/s (end to end), p50/p99 latency (load generator send → sink receive), daemon RSS
and the ratio to each scenario's reference with PASS/MISS against the target. See
docs/performance.md.

Exit status: 0 unless the harness broke (a process did not start, messages were lost, a
request failed); a missed speed target is reported, never an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from harness import report, scenarios
from harness.procs import HarnessError, Sink
from harness.profile import summarize
from harness.runner import Options, Result, run_scenario
from harness.scenarios import Scenario

DEFAULT_URL = os.environ.get("ESB_TEST_BUS_URL", "amqp://guest:guest@127.0.0.1:5672/")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: ceiling, pass-through, attribute CBR, XSLT; 1 KiB; "
                        "small counts")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--soak", action="store_true",
                   help="pass-through for --soak-minutes, reporting RSS growth (only the soak "
                        "unless --scenario is given too)")
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--scenario", action="append", default=[], metavar="NAME",
                   help="run only these (their reference scenarios are added); repeatable")
    p.add_argument("--url", default=DEFAULT_URL, help="RabbitMQ URL (default: %(default)s)")
    p.add_argument("--count", type=int, help="measured messages per scenario")
    p.add_argument("--warmup", type=int, help="warm-up messages per scenario")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes of the daemon (esb run --workers) AND of the ceiling, so "
                        "both use the machine's cores alike (default: one per core, "
                        "%(default)s here); --workers 1 compares one process with one")
    p.add_argument("--repeat", type=int,
                   help="rounds over all scenarios; each row is the run with the median rate "
                        "(default: 3, 1 with --soak)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="record each measured phase with py-spy into DIR (slows the target)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p.parse_args(argv)


def select(args: argparse.Namespace) -> list[Scenario]:
    every = scenarios.by_name()
    if args.quick and not args.scenario:
        return scenarios.quick()
    if not args.scenario:
        return [] if args.soak else scenarios.full()
    unknown = [n for n in args.scenario if n not in every]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; "
                         f"known: {', '.join(every)}")
    wanted = set(args.scenario)
    todo = list(args.scenario)
    while todo:  # add references, transitively
        scn = every[todo.pop()]
        if scn.target and scn.target.reference not in wanted:
            wanted.add(scn.target.reference)
            todo.append(scn.target.reference)
    return [s for s in every.values() if s.name in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for s in scenarios.full():
            target = s.target.label() if s.target else ""
            print(f"{s.name:<16} {s.description}  {target}")
        return 0
    chosen = select(args)
    count = args.count or (2000 if args.quick else 6000)
    warmup = args.warmup or (400 if args.quick else 1000)
    repeat = args.repeat or (1 if args.soak and not args.scenario else 3)
    run_id = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"esb-bench-{run_id}-"))
    opts = Options(bus_url=args.url, run_id=run_id, workdir=workdir, warmup=warmup,
                   count=count, concurrency=args.concurrency, profile_dir=args.profile,
                   workers=args.workers)
    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    started = time.monotonic()
    say(f"esb bench {dt.date.today()}  run {run_id}  {count} msgs after {warmup} warm-up, "
        f"{args.concurrency} in flight, {args.workers} worker(s), {repeat} round(s)  "
        f"(work folder {workdir})")
    results: dict[str, Result] = {}
    failures: dict[str, str] = {}
    soak: Result | None = None
    sink = Sink(workdir)
    try:
        sink.start()
        runs: dict[str, list[Result]] = {}
        for rnd in range(repeat):
            if chosen and repeat > 1:
                say(f"round {rnd + 1} of {repeat}")
            if chosen:
                say(report.HEADER)
            for scn in chosen:
                if scn.name in failures:
                    continue
                try:
                    res = run_scenario(scn, opts, sink)
                except HarnessError as exc:
                    failures[scn.name] = str(exc)
                    say(f"{scn.name:<16} FAILED: {exc}")
                    continue
                runs.setdefault(scn.name, []).append(res)
                say(report.row(scn, res, {**results, **{k: v[-1] for k, v in runs.items()}}))
                if args.profile:
                    raw = args.profile / f"{scn.name}.raw.txt"
                    if raw.exists():
                        say(summarize(raw, top=12))
        results.update({name: report.median_run(rs) for name, rs in runs.items()})
        if repeat > 1 and results:
            say(f"\nmedian of {repeat} rounds (each row: the run with the median msg/s)")
            say(report.HEADER)
            for scn in chosen:
                if scn.name in results:
                    say(report.row(scn, results[scn.name], results))
        if args.soak:
            scn = scenarios.passthrough(scenarios.KIB)
            seconds = args.soak_minutes * 60
            say(f"soak: {scn.name} for {seconds:.0f} s")
            try:
                soak = run_scenario(scn, opts, sink, soak=seconds, on_sample=lambda t, rss: say(
                    f"  {t:6.0f} s  RSS {(rss or 0) / 1024:.1f} MiB"))
                say(report.soak_line(soak))
            except HarnessError as exc:
                failures["soak"] = str(exc)
                say(f"soak FAILED: {exc}")
    except HarnessError as exc:
        failures["harness"] = str(exc)
        say(f"harness FAILED: {exc}")
    finally:
        sink.stop()
    elapsed = time.monotonic() - started
    say(f"done in {elapsed:.0f} s" + (f"; {len(failures)} failure(s)" if failures else ""))
    if args.json:
        meta = {"date": str(dt.date.today()), "run_id": run_id, "count": count,
                "warmup": warmup, "repeat": repeat, "concurrency": args.concurrency,
                "broker": args.url.split("@")[-1], "seconds": round(elapsed, 1),
                "cpus": os.cpu_count(), "workers": args.workers}
        sys.stdout.buffer.write(orjson.dumps(
            report.to_json(chosen, results, soak, meta, failures),
            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    if failures or args.keep:
        say(f"logs and configs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
