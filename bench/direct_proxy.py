"""The reference for request/reply: a direct in-process proxy of the same call, no broker.

    python bench/direct_proxy.py --port PORT --target URL [--mode rest|soap]
                                 [--xslt-in FILE] [--xslt-out FILE] [--workers N]

uvicorn (httptools, uvloop) takes ``POST /in``, and the same HTTP client esb uses
(``esb.bus.runtime.http.make_http_client``: httpx over esb's lean transport) makes the call to
``--target`` the way esb's REST and SOAP destinations make it (``esb.adapters.http.send_plain``:
the client's short path, httpx's full path for an answer it leaves to httpx); its answer is the
response. ``--mode soap``: the body goes through ``--xslt-in``
(lxml, as esb's xslt step), is wrapped in a SOAP 1.1 envelope and posted; the Body's element of
the answer goes through ``--xslt-out``. What esb adds on top — the envelope, routing, the bus
hop there and back, the reply leg — is what the request/reply scenarios measure against this.
``GET /readyz`` answers 200. ``--workers N`` forks N processes on one port, listening as esb's
workers do.

``--bus URL --queue NAME``: the same proxy with a RabbitMQ hop there and back between the
request's way in and the call (``bench/bus_hop.py``): the lean request/reply relay, the floor
of what a broker in the middle costs, beside the direct call.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
from typing import Any

import httpx
import uvicorn
from bus_hop import BusHop
from lxml import etree

from esb.adapters.http import send_plain
from esb.bus.reply import Reply
from esb.bus.runtime.http import bind_listener, make_http_client, worker_listener

S11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": '"urn:example:orders:SubmitOrder"'}


async def call(client: httpx.AsyncClient, url: httpx.URL, body: bytes,
               headers: dict[str, str]) -> tuple[int, bytes, str | None]:
    """POST as esb's destinations do: the short path first, httpx's full path when it
    declines (status, body, content type)."""
    got = await send_plain(client, "POST", url, headers, body, answer=True)
    if isinstance(got, Reply):
        return got.status or 200, got.body, got.content_type
    assert not isinstance(got, int)  # (an int only without ``answer``)
    if got is None:
        got = await client.post(url, content=body, headers=headers)
    return got.status_code, got.content, got.headers.get("content-type")


def build_app(target: str, mode: str, xslt_in: str | None, xslt_out: str | None,
              bus: tuple[str, str] | None = None) -> tuple[Any, BusHop | None]:
    """The ASGI app, and the bus hop it sends its calls through (``bus``: URL, queue), if
    any (to be started before the app serves)."""
    state: dict[str, Any] = {}
    url = httpx.URL(target)
    to_backend = etree.XSLT(etree.parse(xslt_in)) if xslt_in else None
    from_backend = etree.XSLT(etree.parse(xslt_out)) if xslt_out else None
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def client() -> httpx.AsyncClient:
        return state.get("client") or state.setdefault("client", make_http_client())

    async def soap(element: Any) -> tuple[int, Any]:
        """``element`` posted in a SOAP envelope; the status and the answer's Body element."""
        env = etree.Element(f"{{{S11}}}Envelope", nsmap={"soap": S11})
        etree.SubElement(env, f"{{{S11}}}Body").append(element)
        status, content, _ = await call(client(), url, etree.tostring(env), SOAP_HEADERS)
        return status, etree.fromstring(content, parser).find(f"{{{S11}}}Body")[0]

    async def exchange(body: bytes, ctype: str | None) -> tuple[int, bytes, str | None]:
        """The call to the backend as bytes (what crosses the bus): a POST, or (soap) the
        body's element wrapped in a SOAP envelope and the answer's Body element unwrapped."""
        if mode == "rest":
            return await call(client(), url, body, {"Content-Type": ctype or "application/json"})
        status, answer = await soap(etree.fromstring(body, parser))
        return status, etree.tostring(answer), "application/xml"

    hop = BusHop(bus[0], bus[1], exchange) if bus else None

    async def read(receive: Any) -> bytes:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    async def respond(send: Any, status: int, body: bytes, ctype: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/readyz":
            await respond(send, 200, b"ok", b"text/plain")
            return
        body = await read(receive)
        if mode == "rest":
            status, content, ctype = await (hop.call if hop is not None else exchange)(
                body, "application/json")
            await respond(send, status, content, (ctype or "application/json").encode())
            return
        assert to_backend is not None and from_backend is not None
        request = to_backend(etree.fromstring(body, parser)).getroot()
        if hop is None:  # the element goes into the SOAP envelope as it is
            status, answer = await soap(request)
        else:  # bytes cross the bus
            status, content, _ = await hop.call(etree.tostring(request), "application/xml")
            answer = etree.fromstring(content, parser)
        out = etree.tostring(from_backend(answer))
        await respond(send, status, out, b"application/xml")

    return app, hop


def serve(sock: socket.socket, args: argparse.Namespace, worker: bool = False) -> None:
    import uvloop

    if worker:
        sock = worker_listener(sock)
    app, hop = build_app(args.target, args.mode, args.xslt_in, args.xslt_out,
                         (args.bus, args.queue) if args.bus else None)
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                            http="httptools", loop="none")
    server = uvicorn.Server(config)

    async def run() -> None:
        if hop is not None:
            await hop.start()
        try:
            await server.serve(sockets=[sock])
        finally:
            if hop is not None:
                await hop.close()

    uvloop.install()
    asyncio.run(run())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--mode", choices=["rest", "soap"], default="rest")
    p.add_argument("--xslt-in")
    p.add_argument("--xslt-out")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--bus", help="RabbitMQ URL: a hop through the broker there and back")
    p.add_argument("--queue", help="with --bus: the queue the requests go through")
    args = p.parse_args()
    if bool(args.bus) != bool(args.queue):
        p.error("--bus and --queue go together")
    if args.workers <= 1:
        serve(bind_listener("127.0.0.1", args.port), args)
        return
    # listening as esb's workers do (a socket of its own each, where the kernel balances)
    sock = bind_listener("127.0.0.1", args.port, for_workers=True)
    procs = [multiprocessing.Process(target=serve, args=(sock, args, True))
             for _ in range(args.workers)]
    for proc in procs:
        proc.start()

    def stop(signum: int, frame: Any) -> None:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
