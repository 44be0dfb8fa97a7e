"""The legacy ERP for the soap tests: a spyne SOAP 1.1 service under wsgiref (threaded),
behind a WSGI middleware that checks the WS-Security UsernameToken (text or digest)."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
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


class ErpService(ServiceBase):
    @rpc(Unicode(min_occurs=1, nillable=False), Decimal(min_occurs=1, nillable=False),
         _returns=Unicode)
    def ReceiveOrder(ctx: Any, orderId: str, amount: Any) -> str:
        if orderId.startswith("bad"):
            raise Fault(faultcode="Client.UnknownCustomer", faultstring="no such customer")
        if orderId.startswith("boom"):
            raise Fault(faultcode="Server.Database", faultstring="database is down")
        if orderId.startswith("slow"):
            time.sleep(0.8)
        RECEIVED.append((orderId, amount))
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


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class ErpPeer:
    """Serves the ERP on 127.0.0.1; ``url`` is the endpoint (``?wsdl`` for its WSDL)."""

    def __init__(self, require_wsse: bool = False) -> None:
        application = Application([ErpService], tns=NS, name="Erp",
                                  in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
        self.httpd = make_server("127.0.0.1", 0, wsse_guard(WsgiApplication(application),
                                                            require_wsse),
                                 server_class=_Server, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/erp"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> ErpPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

