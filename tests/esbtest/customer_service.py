"""A legacy customer service for request/reply tests: a spyne SOAP 1.1 service with a query
operation, ``GetCustomer(id)`` → ``Customer`` (id, name, tier, creditLimit), under a threaded
wsgiref server on 127.0.0.1.

Ids 1-99 exist; any other id is answered with a ``Client.UnknownCustomer`` fault. Ids 700-799
answer after ``slow_seconds``. Every call is recorded (id, Idempotency-Key header)."""

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
        peer: CustomerPeer = ctx.transport.req_env[PEER_KEY]
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


class CustomerPeer:
    """``url`` is the endpoint; ``url + "?wsdl"`` its WSDL."""

    def __init__(self, slow_seconds: float = 3.0) -> None:
        application = Application([CustomerService], tns=NS, name="Crm",
                                  in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
        self.slow_seconds = slow_seconds
        self.calls: list[tuple[int, str | None]] = []
        self.started: list[int] = []
        self._lock = threading.Lock()
        wsgi = WsgiApplication(application)

        def tagged(environ: dict[str, Any], start_response: Any) -> Any:
            environ[PEER_KEY] = self
            return wsgi(environ, start_response)

        self.httpd = make_server("127.0.0.1", 0, tagged, server_class=_Server,
                                 handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/crm"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def note(self, cid: int, key: str | None) -> None:
        with self._lock:
            self.calls.append((cid, key))

    def __enter__(self) -> CustomerPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
