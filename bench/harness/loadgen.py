"""The load generator: an aiohttp client in its own process, N requests in flight.

    python -m harness.loadgen --url URL --template FILE --n N [--concurrency C]
                              [--header 'Name: value' ...] [--duration S] [--seq-start K]

Each body is the template with ``__BTS__`` replaced by a fresh latency token (sequence numbers
from K). It sends N messages (or keeps sending for ``--duration`` seconds), keeping C requests
in flight, counts any answer other than 200/202 as an error, and prints one JSON line:
``{"sent", "errors", "start_ns", "end_ns", "first_error", "round_trip_p50_ms",
"round_trip_p99_ms"}`` (round trip: send → answer read).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from harness import token
from harness.util import new_loop

OK = frozenset({200, 202})


class Phase:
    def __init__(self) -> None:
        self.sent = 0
        self.errors = 0
        self.first_error: str | None = None
        #: Round trips (send → answer read), ms, of the requests answered 200/202.
        self.round_trips: list[float] = []


async def send_phase(session: aiohttp.ClientSession, url: str, pre: bytes, post: bytes,
                     headers: dict[str, str], seqs: itertools.count[int], concurrency: int,
                     *, n: int | None, until: float | None) -> Phase:
    phase = Phase()
    stop_at = n

    async def worker() -> None:
        while True:
            if until is not None and time.monotonic() >= until:
                return
            if stop_at is not None and phase.sent >= stop_at:
                return
            phase.sent += 1
            seq = next(seqs)
            sent_ns = time.time_ns()
            body = pre + token.make(seq, sent_ns) + post
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status in OK:
                        phase.round_trips.append((time.time_ns() - sent_ns) / 1e6)
                        continue
                    err = f"HTTP {resp.status}: {(await resp.text())[:300]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                err = f"{type(exc).__name__}: {exc}"
            phase.errors += 1
            phase.first_error = phase.first_error or err

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return phase


async def run(args: argparse.Namespace) -> dict[str, Any]:
    template = Path(args.template).read_bytes()
    pre, _, post = template.partition(token.PLACEHOLDER)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    seqs = itertools.count(args.seq_start)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.time_ns()
        until = time.monotonic() + args.duration if args.duration else None
        phase = await send_phase(session, args.url, pre, post, headers, seqs,
                                 args.concurrency, n=None if args.duration else args.n,
                                 until=until)
        end = time.time_ns()
    trips = sorted(phase.round_trips)

    def pct(q: float) -> float | None:
        return trips[min(len(trips) - 1, round(q * (len(trips) - 1)))] if trips else None

    return {"sent": phase.sent, "errors": phase.errors, "start_ns": start, "end_ns": end,
            "first_error": phase.first_error, "cpu_s": time.process_time(),
            "round_trip_p50_ms": pct(0.5), "round_trip_p99_ms": pct(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--seq-start", type=int, default=0)
    args = parser.parse_args()
    loop = new_loop()
    try:
        result = loop.run_until_complete(run(args))
    finally:
        loop.close()
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
