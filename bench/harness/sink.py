"""The destination every scenario delivers to: a lean aiohttp server in its own process.

    python -m harness.sink --port PORT        (with bench/ on PYTHONPATH)

``POST /sink[/...]`` records, per message, the receive time and the token's sequence number
and send time (:mod:`harness.token`), and answers ``200`` at once; ``POST /echo[/...]``
records the same and answers with the request's body (the request/reply scenarios' backend).
``GET /_stats`` returns the counts and the latencies (ms) since the last ``POST /_reset``.
"""

from __future__ import annotations

import argparse
import time

import orjson
from aiohttp import web

from harness import token
from harness.util import new_loop


class Recorder:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seqs: set[int] = set()
        self.sent: list[int] = []
        self.recv: list[int] = []
        self.dupes = 0
        self.untokened = 0

    def record(self, body: bytes) -> None:
        now = time.time_ns()
        parsed = token.parse(body)
        if parsed is None:
            self.untokened += 1
            return
        seq, sent = parsed
        if seq in self.seqs:
            self.dupes += 1
            return
        self.seqs.add(seq)
        self.sent.append(sent)
        self.recv.append(now)

    def stats(self, latencies: bool) -> dict[str, object]:
        out: dict[str, object] = {
            "count": len(self.seqs), "dupes": self.dupes, "untokened": self.untokened,
            "first_recv_ns": min(self.recv, default=0), "last_recv_ns": max(self.recv, default=0),
        }
        if latencies:
            out["latencies_ms"] = [(r - s) / 1e6 for s, r in zip(self.sent, self.recv,
                                                                  strict=True)]
        return out


def make_app() -> web.Application:
    rec = Recorder()

    async def sink(request: web.Request) -> web.Response:
        rec.record(await request.read())
        return web.Response(status=200)

    async def echo(request: web.Request) -> web.Response:
        # A backend that answers: request/reply scenarios get their own body back.
        body = await request.read()
        rec.record(body)
        return web.Response(body=body, status=200,
                            content_type=request.content_type or "application/json")

    async def stats(request: web.Request) -> web.Response:
        body = orjson.dumps(rec.stats(request.query.get("latencies") == "1"))
        return web.Response(body=body, content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        rec.reset()
        return web.Response(status=204)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/sink", sink)
    app.router.add_post("/sink/{tail:.*}", sink)
    app.router.add_post("/echo", echo)
    app.router.add_post("/echo/{tail:.*}", echo)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, access_log=None,
                print=None, backlog=1024, loop=new_loop())


if __name__ == "__main__":
    main()
