"""The legacy ERP for the soap tests: a spyne SOAP 1.1 service under wsgiref (threaded),
behind a WSGI middleware that checks the WS-Security UsernameToken (text or digest), and
optionally one in front of everything (``?wsdl`` included) that checks the HTTP
``Authorization`` header: 401 and a Client fault that echoes what was presented, as careless
services do, otherwise.

Order ids pick the answer: ``bad...`` a Client fault, ``boom...`` a Server fault every time,
``flaky...`` a Server fault for the first ``flaky_failures`` calls of that id and then success,
``slow...`` success after 0.8 s; anything else success. Every peer records the orders it took
(``received``) and how often each id was called (``calls``); ``RECEIVED`` collects the orders
of all peers."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
from collections import Counter
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lxml import etree
from spyne import Application, Decimal, Fault, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

NS = "urn:example:erp"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST = ("http://docs.oasis-open.org/wss/2004/01/"
          "oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
USER, PASSWORD = "esb", "s3cret"

RECEIVED: list[tuple[str, Any]] = []
#: WSGI environ key under which the serving :class:`ErpPeer` reaches the service.
PEER_KEY = "erp.peer"


class ErpService(ServiceBase):
    @rpc(Unicode(min_occurs=1, nillable=False), Decimal(min_occurs=1, nillable=False),
         _returns=Unicode)
    def ReceiveOrder(ctx: Any, orderId: str, amount: Any) -> str:
        peer: ErpPeer = ctx.transport.req_env[PEER_KEY]
        calls = peer.count_call(orderId)
        if orderId.startswith("bad"):
            raise Fault(faultcode="Client.UnknownCustomer", faultstring="no such customer")
        if orderId.startswith("boom") or (orderId.startswith("flaky")
                                          and calls <= peer.flaky_failures):
            raise Fault(faultcode="Server.Database", faultstring="database is down")
        if orderId.startswith("slow"):
            time.sleep(0.8)
        RECEIVED.append((orderId, amount))
        peer.received.append((orderId, amount))
        peer.keys.append(ctx.transport.req_env.get("HTTP_IDEMPOTENCY_KEY"))
        return f"OK-{orderId}"


def _fault(code: str, text: str) -> bytes:
    return (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            f"<s:Fault><faultcode>s:{code}</faultcode><faultstring>{text}</faultstring>"
            "</s:Fault></s:Body></s:Envelope>").encode()


def _token_ok(body: bytes) -> bool:
    token = etree.fromstring(body).find(f".//{{{WSSE}}}UsernameToken")
    if token is None or token.findtext(f"{{{WSSE}}}Username") != USER:
        return False
    password = token.find(f"{{{WSSE}}}Password")
    if password is None:
        return False
    if password.get("Type") == DIGEST:
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
        created = (token.findtext(f"{{{WSU}}}Created") or "").encode()
        expected = hashlib.sha1(nonce + created + PASSWORD.encode()).digest()
        return password.text == base64.b64encode(expected).decode()
    return password.text == PASSWORD


def wsse_guard(app: Any, required: bool) -> Any:
    """WSGI middleware: POSTs need a valid UsernameToken when ``required``."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and required:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(size)
            environ["wsgi.input"] = io.BytesIO(body)
            if not _token_ok(body):
                start_response("500 Internal Server Error",
                               [("Content-Type", "text/xml; charset=utf-8")])
                return [_fault("Client.Authentication", "bad UsernameToken")]
        return app(environ, start_response)

    return guarded


def http_guard(app: Any, peer: ErpPeer, accepts: Callable[[str | None], bool]) -> Any:
    """WSGI middleware: every request needs an ``Authorization`` value ``accepts`` takes."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        presented = environ.get("HTTP_AUTHORIZATION")
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        peer.seen.append((environ["REQUEST_METHOD"], headers))
        if not accepts(presented):
            start_response("401 Unauthorized", [("Content-Type", "text/xml; charset=utf-8"),
                                                ("WWW-Authenticate", 'Basic realm="erp"')])
            return [_fault("Client.Authentication", f"refused credentials {presented}")]
        return app(environ, start_response)

    return guarded


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class ErpPeer:
    """Serves the ERP on 127.0.0.1; ``url`` is the endpoint (``?wsdl`` for its WSDL)."""

    def __init__(self, require_wsse: bool = False, flaky_failures: int = 2,
                 http_auth: Callable[[str | None], bool] | None = None) -> None:
        application = Application([ErpService], tns=NS, name="Erp",
                                  in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
        self.flaky_failures = flaky_failures
        self.received: list[tuple[str, Any]] = []
        #: The Idempotency-Key header of each accepted call, in the order of ``received``.
        self.keys: list[str | None] = []
        self.calls: Counter[str] = Counter()
        #: Method and headers (lower-cased names) of every request ``http_auth`` judged.
        self.seen: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        app = wsse_guard(WsgiApplication(application), require_wsse)
        if http_auth is not None:
            app = http_guard(app, self, http_auth)
        self.httpd = make_server("127.0.0.1", 0, self._tagged(app),
                                 server_class=_Server, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/erp"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def _tagged(self, app: Any) -> Any:
        """``app`` with this peer in the WSGI environ, where the service finds it."""

        def tagged(environ: dict[str, Any], start_response: Any) -> Any:
            environ[PEER_KEY] = self
            return app(environ, start_response)

        return tagged

    def count_call(self, order_id: str) -> int:
        """Note one call for ``order_id``; how many there were so far, this one included."""
        with self._lock:
            self.calls[order_id] += 1
            return self.calls[order_id]

    def __enter__(self) -> ErpPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

