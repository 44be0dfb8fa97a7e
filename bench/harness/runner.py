"""Running one scenario: start its process, warm up, measure, collect, clean up."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.procs import (
    Ceiling,
    Child,
    Daemon,
    HarnessError,
    Loadgen,
    Proxy,
    Sink,
    run_loadgen,
)
from harness.scenarios import Scenario
from harness.util import broker_pid, cpu_seconds


@dataclass
class Options:
    bus_url: str
    run_id: str
    workdir: Path
    warmup: int
    count: int
    concurrency: int = 64
    profile_dir: Path | None = None
    #: processes of the target (``esb run --workers N``; N ceiling relays on one socket)
    workers: int = 1


@dataclass
class Result:
    name: str
    size: int
    sent: int
    received: int
    dupes: int
    rate: float  # end to end: messages received by the sink per second
    ingress_rate: float  # accepted (202) per second
    p50_ms: float
    p99_ms: float
    rss_ready_kib: int | None = None
    rss_start_kib: int | None = None
    rss_end_kib: int | None = None
    #: CPU time per delivered message (µs) of the target (daemon or ceiling), the broker and
    #: the harness (load generator + sink), over the measured phase: on a shared machine the
    #: rates are bounded by CPU, so these say where a difference in rate comes from.
    cpu_us: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _target(scn: Scenario, opts: Options, sink: Sink) -> Daemon | Ceiling | Proxy:
    root = opts.workdir / scn.name
    root.mkdir(parents=True, exist_ok=True)
    if scn.kind == "ceiling":
        return Ceiling(opts.bus_url, f"bench-{opts.run_id}.{scn.name}", sink.url, root,
                       workers=opts.workers, client=scn.client)
    if scn.kind == "proxy":
        return Proxy(sink.url, root / "proxy", scn.proxy_args, scn.files, root,
                     workers=opts.workers, bus_url=opts.bus_url,
                     queue=f"bench-{opts.run_id}.{scn.name}")
    return Daemon(root / "project", opts.bus_url, f"bench-{opts.run_id}-{scn.name}", sink.url,
                  scn.source, scn.routes, scn.files, root, "daemon", workers=opts.workers,
                  destination=scn.destination)


def _send(scn: Scenario, target: Daemon | Ceiling | Proxy, opts: Options, template: Path, *,
          n: int = 0, duration: float = 0.0, seq_start: int = 0) -> Loadgen:
    url = target.url + (scn.path if scn.kind == "esb" else "/in")
    return Loadgen(url, template, scn.headers, n=n, duration=duration,
                   concurrency=opts.concurrency, seq_start=seq_start,
                   log_dir=template.parent).start()


def _check(result: dict[str, Any], what: str) -> None:
    if result["errors"]:
        raise HarnessError(f"{what}: {result['errors']} requests failed; first: "
                           f"{result['first_error']}")


def _drain(sink: Sink, expected: int, what: str, timeout: float) -> dict[str, Any]:
    stats = sink.wait_count(expected, timeout)
    if stats["count"] < expected:
        raise HarnessError(f"{what}: the sink received {stats['count']} of {expected} "
                           f"messages within {timeout:g}s (lost or stuck)")
    return stats


def run_scenario(scn: Scenario, opts: Options, sink: Sink, *, soak: float = 0.0,
                 on_sample: Callable[[float, int | None], None] | None = None) -> Result:
    template = opts.workdir / scn.name / "body.tmpl"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_bytes(scn.body)
    target = _target(scn, opts, sink)
    profiler: Child | None = None
    try:
        target.start()
        rss_ready = target.rss()
        sink.reset()
        warm = run_loadgen(target.url + (scn.path if scn.kind == "esb" else "/in"), template,
                           scn.headers, n=opts.warmup, concurrency=opts.concurrency,
                           log_dir=template.parent, timeout=300)
        _check(warm, f"{scn.name} warm-up")
        _drain(sink, warm["sent"], f"{scn.name} warm-up", 120)
        time.sleep(0.3)  # let acks and stragglers settle
        sink.reset()
        rss_start = target.rss()
        broker = broker_pid()
        cpu0 = {"target": cpu_seconds(target.pid), "broker": cpu_seconds(broker),
                "sink": cpu_seconds(sink.pid)}
        if opts.profile_dir is not None:
            profiler = _start_profiler(target.pid, opts.profile_dir / f"{scn.name}.raw.txt",
                                       template.parent)
        gen = _send(scn, target, opts, template, n=opts.count, duration=soak,
                    seq_start=opts.warmup)
        samples: list[tuple[float, int | None]] = []
        if soak:
            t0 = time.monotonic()
            while gen.running():
                time.sleep(min(60.0, soak / 10))
                sample = (time.monotonic() - t0, target.rss())
                samples.append(sample)
                if on_sample is not None:
                    on_sample(*sample)
        res = gen.result(timeout=soak + 900)
        _check(res, scn.name)
        stats = _drain(sink, res["sent"], scn.name, 300)
        cpu1 = {"target": cpu_seconds(target.pid), "broker": cpu_seconds(broker),
                "sink": cpu_seconds(sink.pid)}
        if profiler is not None:
            _stop_profiler(profiler)
            profiler = None
        rss_end = target.rss()
        lat = sink.stats(latencies=True)["latencies_ms"]
        elapsed = (stats["last_recv_ns"] - res["start_ns"]) / 1e9
        if scn.round_trip:  # the callers' view: send → answer read
            p50, p99 = res["round_trip_p50_ms"], res["round_trip_p99_ms"]
        else:
            p50, p99 = percentile(lat, 0.50), percentile(lat, 0.99)
        return Result(
            name=scn.name, size=scn.size, sent=res["sent"], received=stats["count"],
            dupes=stats["dupes"], rate=stats["count"] / elapsed if elapsed > 0 else 0.0,
            ingress_rate=res["sent"] / ((res["end_ns"] - res["start_ns"]) / 1e9),
            p50_ms=p50, p99_ms=p99,
            rss_ready_kib=rss_ready, rss_start_kib=rss_start, rss_end_kib=rss_end,
            cpu_us=_cpu_per_message(cpu0, cpu1, res.get("cpu_s"), stats["count"]),
            extra={"rss_samples_kib": samples} if soak else {})
    finally:
        if profiler is not None:
            _stop_profiler(profiler)
        failed = sys.exc_info()[0] is not None
        code = target.stop()
        target.cleanup()
        if not failed and code not in (0, None, -signal.SIGTERM):
            raise HarnessError(f"{scn.name}: {target.name} exited with {code} on SIGTERM:\n"
                               f"{target.log_tail()}")


def _cpu_per_message(before: dict[str, float | None], after: dict[str, float | None],
                     loadgen_s: float | None, count: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in ("target", "broker"):
        a, b = before[name], after[name]
        if a is not None and b is not None and count:
            out[name] = round((b - a) / count * 1e6, 1)
    a, b = before["sink"], after["sink"]
    if a is not None and b is not None and loadgen_s is not None and count:
        out["harness"] = round((b - a + loadgen_s) / count * 1e6, 1)
    return out


def _start_profiler(pid: int, out: Path, log_dir: Path) -> Child:
    out.parent.mkdir(parents=True, exist_ok=True)
    prof = Child("py-spy", [_py_spy(), "record", "--pid", str(pid), "--subprocesses",
                            "--rate", "200", "--format", "raw", "--nonblocking", "-o", str(out)],
                 log_dir, log_dir)
    prof.start()
    time.sleep(1.0)  # py-spy attaches
    if not prof.alive():
        raise HarnessError(f"py-spy failed to attach:\n{prof.log_tail()}")
    return prof


def _py_spy() -> str:
    """py-spy from PATH, else beside this interpreter (a virtualenv not activated)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise HarnessError("--profile needs py-spy: pip install py-spy (into this virtualenv)")
    return found


def _stop_profiler(prof: Child) -> None:
    if prof.proc is None or prof.proc.poll() is not None:
        return
    prof.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    with contextlib.suppress(subprocess.TimeoutExpired):
        prof.proc.wait(30)
    if prof.proc.poll() is None:
        prof.proc.kill()
