"""SOAP inbound: serve the WSDL, validate each call, hand it to the bus, and answer: with an
acknowledgement (one-way routes), or — when a request/reply route takes the call — with the
operation's real output message built from the destination's answer (validated against the
WSDL's schema), or a fault.

``GET path?wsdl`` serves the WSDL and ``GET path?xsd=NAME`` the schema files it refers to, their
addresses and ``schemaLocation`` values rewritten to the URL the request came in on.

SOAP header blocks are not processed: one marked ``mustUnderstand`` and addressed to this node
(no actor/role, ``next`` or ``ultimateReceiver``) is answered with a MustUnderstand fault
before the body is looked at (SOAP 1.1 §4.2.3, SOAP 1.2 part 1 §5.2.3) — WS-Security's
``wsse:Security`` included: this endpoint authenticates at the HTTP level (``auth:``).

With ``auth:`` every request (``?wsdl`` included) is authenticated before its body is read. A
refused one gets a Client (1.1) / Sender (1.2) fault with HTTP status 401 and
``WWW-Authenticate``: SOAP 1.1 over HTTP answers faults with 500, but authentication happens at
the HTTP layer, below SOAP, and 401 is what HTTP clients (and WS-I Basic Profile R1113's
"appropriate status" rule) expect, so SOAP toolkits prompt for or resend credentials.
"""

from __future__ import annotations

from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from esb.adapters.auth.inbound import Unauthorized, authenticate, build_authenticator
from esb.adapters.soap.ack import build_ack
from esb.adapters.soap.faults import (
    ENV_NS,
    SOAP12_ENV,
    FaultKind,
    Version,
    detached,
    envelope_response,
    fault_response,
)
from esb.adapters.soap.schema import Child, children
from esb.adapters.soap.settings import SoapInboundSettings
from esb.adapters.soap.wsdl import ServiceDescription, load_description
from esb.adapters.spec import HttpInbound, HttpRoute, InboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import BusUnavailable
from esb.bus.httpbody import BodyTooLarge, EncodingRefused, read_body
from esb.bus.payload import media_type
from esb.bus.problem import not_taken_title
from esb.bus.reply import problem_of
from esb.bus.xmlsafe import XmlError, parse_xml

#: Failure kinds answered with a Client (Sender) fault: the caller's input is at fault.
_CALLER_FAULTS = frozenset({"not-found", "rejected"})
_MEDIA = {"text/xml": "1.1", "application/soap+xml": "1.2"}
#: Who a header block is for when it is for this node (besides no actor/role at all).
_OURS = {"1.1": ("actor", {"http://schemas.xmlsoap.org/soap/actor/next"}),
         "1.2": ("role", {f"{SOAP12_ENV}/role/next", f"{SOAP12_ENV}/role/ultimateReceiver"})}


class SoapFault(Exception):
    """Raised inside the handler; answered as a Client (or VersionMismatch) fault."""

    def __init__(self, reason: str, kind: FaultKind = "client",
                 status: int | None = None, not_understood: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.kind = kind
        self.status = status
        self.not_understood = not_understood


class SoapInbound(HttpInbound):
    """One SOAP endpoint: ``GET path?wsdl`` and ``POST path``."""

    def __init__(self, settings: SoapInboundSettings, ctx: InboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.description: ServiceDescription = load_description(ctx.config_dir / settings.wsdl)
        self._outputs: dict[str, list[Child]] = {
            op.name: children(self.description.schemas, op.output)
            for op in self.description.operations.values() if op.output}
        self._wsdl_cache: dict[tuple[str, str], bytes] = {}
        self.authenticator = build_authenticator(settings.auth, ctx.config_dir)
        self.routes = [HttpRoute(settings.path, ("GET", "POST"), self.handle)]

    async def handle(self, request: Request) -> Response:
        media, params = media_type(request.headers.get("content-type", ""))
        version: Version = _MEDIA.get(media, "1.1")  # type: ignore[assignment]
        try:
            principal = await authenticate(self.authenticator, request)
        except Unauthorized as exc:
            response = fault_response(version, "client", f"authentication failed: {exc.detail}",
                                      status=401)
            response.headers["WWW-Authenticate"] = exc.challenge
            return response
        request.state.principal = principal
        if request.method == "GET":
            return self.serve_wsdl(request)
        if media not in _MEDIA:
            return fault_response(version, "client", f"unsupported content type {media!r}; "
                                  "use text/xml (SOAP 1.1) or application/soap+xml (SOAP 1.2)",
                                  status=415)
        if version == "1.1":
            action = request.headers.get("soapaction", "").strip().strip('"')
        else:
            action = params.get("action", "")
        if version not in self.description.versions:
            # A SOAP 1.1 envelope on a 1.2-only endpoint (or the reverse): a VersionMismatch
            # fault in the version the client spoke, so it can read it (SOAP 1.2 part 1,
            # 5.4.7), naming the version this endpoint takes.
            supported = ", ".join(sorted(self.description.versions))
            return fault_response(version, "version", f"this endpoint takes SOAP {supported} "
                                  f"only, not SOAP {version}", status=500,
                                  upgrade=tuple(sorted(self.description.versions)))
        try:
            return await self.call(request, version, action)
        except SoapFault as fault:
            return fault_response(version, fault.kind, str(fault), fault.status,
                                  fault.not_understood)

    def serve_wsdl(self, request: Request) -> Response:
        """The WSDL (``?wsdl``) or one of its schema files (``?xsd=NAME``), addresses
        rewritten to the URL this request came in on."""
        query = {k.lower(): v for k, v in request.query_params.items()}
        if "wsdl" not in query and "xsd" not in query:
            return Response("GET with ?wsdl for the service description\n", status_code=400,
                            media_type="text/plain")
        location = str(request.url.replace(query=""))
        name = "" if "wsdl" in query else query["xsd"]
        content = self._wsdl_cache.get((location, name))
        if content is None:
            content = self.description.schema_file(name, location) if name \
                else self.description.with_address(location)
            if content is None:
                return Response(f"no schema file {name!r} here\n", status_code=404,
                                media_type="text/plain")
            if len(self._wsdl_cache) < 16:
                self._wsdl_cache[(location, name)] = content
        return Response(content, media_type="text/xml; charset=utf-8")

    async def call(self, request: Request, version: Version, action: str) -> Response:
        """Validate one call, publish it, answer with the acknowledgement."""
        try:
            body = await read_body(request, self.settings.max_body)
        except BodyTooLarge as exc:
            raise SoapFault(str(exc), status=413) from exc
        except EncodingRefused as exc:
            raise SoapFault(str(exc), status=exc.status) from exc
        try:
            # read_body enforced max_body already
            root = parse_xml(body, max_bytes=None, limits=self.ctx.xml_limits)
        except XmlError as exc:
            raise SoapFault(f"malformed XML: {exc}") from exc
        operation_element = self._operation_element(root, version)
        operation = self.description.find(operation_element.tag, action)
        if operation is None:
            raise SoapFault(f"unknown operation element {operation_element.tag}")
        if operation.actions and version not in operation.actions:
            raise SoapFault(f"operation {operation.name} is not bound for SOAP {version} here",
                            kind="version", status=500)
        mismatch = self.description.action_problem(operation, version, action)
        if mismatch:
            raise SoapFault(mismatch)
        element = detached(operation_element)
        if not self.description.schema.validate(element):
            errors = "; ".join(f"line {e.line}: {e.message}"
                               for e in list(self.description.schema.error_log)[:3])
            raise SoapFault(f"schema violation in {operation.name}: {errors}")

        headers = {"soapaction": action or operation.actions.get(version, "")}
        principal = getattr(request.state, "principal", None)
        if principal is not None:
            headers["principal"] = principal
        envelope = Envelope(
            type=operation.name,
            source=self.settings.source or self.ctx.name,
            datacontenttype="application/xml",
            data=etree.tostring(element, encoding="unicode"),
            esbheaders=headers,
            traceparent=request.headers.get("traceparent"),
            esbendpoint=self.ctx.name,
        )
        try:
            result = await self.ctx.request(envelope)
        except BusUnavailable as exc:
            return fault_response(version, "server",
                                  f"{not_taken_title(exc).lower()}; retry later")
        if isinstance(result, Envelope):  # a request/reply route answered
            return self.answer(version, operation.name, operation.output, result)
        accepted = result
        if operation.output is None:
            return Response(status_code=202)
        envelope = envelope.model_copy(update={"id": accepted.id})
        ack = build_ack(operation.output, self._outputs.get(operation.name, []),
                        self.settings.ack_for(operation.name), envelope, element)
        return envelope_response(version, ack)

    def answer(self, version: Version, name: str, output: str | None,
               reply: Envelope) -> Response:
        """The operation's real output message from a request/reply answer: the reply (after
        its reply leg) must be that element as XML, valid against the WSDL's schema; else, and
        for every failure, a fault (Client for the caller's own input: not found, rejected)."""
        failure = problem_of(reply)
        if failure is not None:
            kind: FaultKind = "client" if failure.kind in _CALLER_FAULTS else "server"
            return fault_response(version, kind, failure.detail)
        if output is None:
            return Response(status_code=202)
        data = reply.data
        if not isinstance(data, str | bytes) or not reply.is_xml:
            return fault_response(version, "server", f"the answer to {name} is not XML "
                                  f"({reply.datacontenttype or 'no content type'}): the "
                                  "route's reply steps must build the output message")
        try:
            element = parse_xml(data.encode() if isinstance(data, str) else data,
                                max_bytes=None)
        except XmlError as exc:
            return fault_response(version, "server", f"the answer to {name} is not "
                                  f"well-formed XML: {exc}")
        if element.tag != output:
            return fault_response(version, "server", f"the answer to {name} is a "
                                  f"{element.tag} element; the WSDL's output message is "
                                  f"{output}")
        schema = self.description.schema
        if not schema.validate(element):
            errors = "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:3])
            return fault_response(version, "server", f"the answer to {name} does not match "
                                  f"the WSDL's output schema: {errors}")
        return envelope_response(version, element)

    @staticmethod
    def _operation_element(root: etree._Element, version: Version) -> etree._Element:
        ns = ENV_NS[version]
        if etree.QName(root).localname == "Envelope" and root.tag != f"{{{ns}}}Envelope":
            other = "1.2" if version == "1.1" else "1.1"
            if root.tag == f"{{{ENV_NS[other]}}}Envelope":
                raise SoapFault(f"a SOAP {other} envelope sent as SOAP {version} "
                                "(check the content type)", kind="version", status=500)
        if root.tag != f"{{{ns}}}Envelope":
            raise SoapFault(f"not a SOAP {version} envelope: root element is {root.tag}")
        refused = not_understood(root, version)
        if refused:
            raise SoapFault(f"header {', '.join(refused)} must be understood and is not "
                            "processed by this endpoint", kind="mustunderstand",
                            not_understood=refused)
        body = root.find(f"{{{ns}}}Body")
        first = next((c for c in body if isinstance(c.tag, str)), None) \
            if body is not None else None
        if first is None:
            raise SoapFault("the SOAP Body is empty")
        return first


def not_understood(root: etree._Element, version: Version) -> tuple[str, ...]:
    """The header blocks of envelope ``root`` marked ``mustUnderstand`` and addressed to this
    node (none is processed here), in Clark notation."""
    ns = ENV_NS[version]
    header = root.find(f"{{{ns}}}Header")
    if header is None:
        return ()
    attribute, ours = _OURS[version]
    refused = []
    for block in header:
        if not isinstance(block.tag, str):
            continue
        if block.get(f"{{{ns}}}mustUnderstand", "0").strip() not in ("1", "true"):
            continue
        target = block.get(f"{{{ns}}}{attribute}")
        if target is None or target.strip() in ours:
            refused.append(block.tag)
    return tuple(refused)
