"""The legacy system this example puts a modern face on: a customer service that only speaks
SOAP 1.1 (spyne), with one query operation.

    python fakes.py                 # serve it on 127.0.0.1:9201 (WSDL at /crm?wsdl)

``GetCustomer(id)`` answers a ``Customer`` (id, name, tier, creditLimit) for ids 1-99; any other
id is a ``Client.UnknownCustomer`` fault, as the real system answers. Ids 700-799 answer after
``slow_seconds`` (3 s): try a route's timeout on them. Every call is recorded (id and the
``Idempotency-Key`` header esb sends along)."""

from __future__ import annotations

import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from spyne import Application, ComplexModel, Decimal, Fault, Integer, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

NS = "urn:example:crm"
PORT = 9201
PEER_KEY = "crm.peer"


class Customer(ComplexModel):
    __namespace__ = NS
    id = Integer
    name = Unicode
    tier = Unicode
    creditLimit = Decimal


class CustomerService(ServiceBase):
    @rpc(Integer(min_occurs=1, nillable=False), _returns=Customer)
    def GetCustomer(ctx: Any, id: int) -> Customer:
        peer: LegacyCrm = ctx.transport.req_env[PEER_KEY]
        peer.note(id, ctx.transport.req_env.get("HTTP_IDEMPOTENCY_KEY"))
        if 700 <= id < 800:
            time.sleep(peer.slow_seconds)
            return Customer(id=id, name=f"Slow {id}", tier="silver", creditLimit=100)
        if not 1 <= id < 100:
            raise Fault(faultcode="Client.UnknownCustomer", faultstring=f"no customer {id}")
        return Customer(id=id, name=f"Customer {id}", tier="gold" if id % 2 else "silver",
                        creditLimit=1000 * id)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class LegacyCrm:
    """The service on 127.0.0.1 (``port`` 0: a free one); ``url`` is its endpoint."""

    def __init__(self, port: int = 0, slow_seconds: float = 3.0) -> None:
        application = Application([CustomerService], tns=NS, name="Crm",
                                  in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
        self.slow_seconds = slow_seconds
        self.calls: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()
        wsgi = WsgiApplication(application)

        def tagged(environ: dict[str, Any], start_response: Any) -> Any:
            environ[PEER_KEY] = self
            return wsgi(environ, start_response)

        self.httpd = make_server("127.0.0.1", port, tagged, server_class=_Server,
                                 handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/crm"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def note(self, cid: int, key: str | None) -> None:
        with self._lock:
            self.calls.append((cid, key))

    def __enter__(self) -> LegacyCrm:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)  # spyne logs every fault it raises
    with LegacyCrm(PORT) as crm:
        print(f"legacy CRM (SOAP) at {crm.url}  (WSDL: {crm.url}?wsdl); Ctrl-C stops it",
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
