"""Results as a table (with ratios against their targets) or as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from harness.runner import Result
from harness.scenarios import Scenario

SOAK_LIMIT_PCT = 5.0


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.1f}"


def median_run(runs: list[Result]) -> Result:
    """The run with the median rate (the lower middle one for an even count); every run's
    rate is kept in ``extra['rates']``."""
    ordered = sorted(runs, key=lambda r: r.rate)
    chosen = ordered[(len(ordered) - 1) // 2]
    if len(runs) > 1:
        chosen.extra["rates"] = [round(r.rate, 1) for r in runs]
    return chosen


def ratio_row(scn: Scenario, results: dict[str, Result]) -> dict[str, Any]:
    """The ratio to the scenario's reference and whether it meets the target."""
    if scn.target is None or scn.name not in results:
        return {"ratio": None, "cpu_ratio": None, "target": None, "verdict": None}
    ref = results.get(scn.target.reference)
    if ref is None or not ref.rate:
        return {"ratio": None, "cpu_ratio": None, "target": scn.target.label(),
                "verdict": None}
    ratio = results[scn.name].rate / ref.rate
    verdict = None if scn.target.factor is None else (
        "PASS" if ratio >= scn.target.factor else "MISS")
    return {"ratio": round(ratio, 3), "cpu_ratio": cpu_ratio(results[scn.name], ref),
            "target": scn.target.label(), "verdict": verdict}


def cpu_ratio(res: Result, ref: Result) -> float | None:
    """The target's CPU per message over the reference's: steadier than the rate ratio on a
    shared machine, where the two runs may not get the same share of the cores (a rate ratio
    of 0.8 asks for about 1.6 x the reference's CPU, as the other processes take their part)."""
    mine, theirs = res.cpu_us.get("target"), ref.cpu_us.get("target")
    if not mine or not theirs:
        return None
    return round(mine / theirs, 2)


HEADER = (f"{'scenario':<16} {'msg/s':>7} {'in msg/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'RSS MiB start→end':>18} {'CPU µs/msg t/b/h':>17}  {'ratio':>6} {'cpu x':>6}  target")


def row(scn: Scenario, res: Result, results: dict[str, Result]) -> str:
    r = ratio_row(scn, results)
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
    cpu_x = "-" if r["cpu_ratio"] is None else f"{r['cpu_ratio']:.2f}"
    target = r["target"] or ""
    if r["verdict"]:
        target = f"{target}  {r['verdict']}"
    rss = f"{_mib(res.rss_start_kib)}→{_mib(res.rss_end_kib)}"
    cpu = "/".join(f"{res.cpu_us[k]:.0f}" if k in res.cpu_us else "-"
                   for k in ("target", "broker", "harness"))
    return (f"{res.name:<16} {res.rate:>7.0f} {res.ingress_rate:>8.0f} {_ms(res.p50_ms):>7} "
            f"{_ms(res.p99_ms):>7} {rss:>18} {cpu:>17}  {ratio:>6} {cpu_x:>6}  {target}")


def soak_summary(res: Result) -> dict[str, Any]:
    start, end = res.rss_start_kib or 0, res.rss_end_kib or 0
    growth = (end - start) / start * 100 if start else float("nan")
    return {"rss_start_kib": start, "rss_end_kib": end, "growth_pct": round(growth, 2),
            "target": f"< {SOAK_LIMIT_PCT:g} %",
            "verdict": "PASS" if growth < SOAK_LIMIT_PCT else "MISS"}


def soak_line(res: Result) -> str:
    s = soak_summary(res)
    return (f"soak ({res.sent} msgs, {res.rate:.0f} msg/s): RSS {_mib(s['rss_start_kib'])} → "
            f"{_mib(s['rss_end_kib'])} MiB, growth {s['growth_pct']:+.2f} % "
            f"(target {s['target']})  {s['verdict']}")


def to_json(scenarios: list[Scenario], results: dict[str, Result], soak: Result | None,
            meta: dict[str, Any], failures: dict[str, str]) -> dict[str, Any]:
    rows = []
    for scn in scenarios:
        if scn.name not in results:
            continue
        d = asdict(results[scn.name])
        d.update(ratio_row(scn, results))
        d["description"] = scn.description
        rows.append(d)
    out: dict[str, Any] = {"meta": meta, "results": rows, "failures": failures}
    if soak is not None:
        out["soak"] = {**asdict(soak), **soak_summary(soak)}
    return out
