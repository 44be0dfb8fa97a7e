"""SOAP outbound: one operation of a WSDL-described service, typed (zeep serializes the
envelope's JSON) or raw (the envelope's XML body element is sent as is).

HTTP ``auth`` and ``headers`` go with every call (and with WSDL/XSD fetches from the service's
origin, see :mod:`esb.adapters.soap.transport`), WS-Security in the envelope alongside. Every
URL (the WSDL's, the documents it imports, ``address``, the OAuth token endpoint) is checked
against the outbound allow-list; delivery errors name the endpoint without credentials and
with secrets a service echoes back replaced by ``***``.
"""

from __future__ import annotations

import asyncio

import httpx
import zeep
import zeep.exceptions
from lxml import etree
from zeep.proxy import AsyncServiceProxy
from zeep.wsdl.bindings.soap import Soap12Binding, SoapBinding
from zeep.wsdl.utils import etree_to_string
from zeep.wsse.username import UsernameToken

from esb.adapters.auth.outbound import build_outbound_auth, redact_url, scrubbed
from esb.adapters.http import check_host, header_safe, raise_for_status, transport_error
from esb.adapters.soap.faults import (
    SOAP11_ENV,
    SOAP12_ENV,
    Version,
    detached,
    element_bytes,
    envelope_bytes,
    fault_name,
    is_permanent_code,
    soap_envelope,
)
from esb.adapters.soap.settings import SoapOutboundSettings
from esb.adapters.soap.transport import (
    HttpxTransport,
    NetworkWsdlForbidden,
    WsdlUnavailable,
    call_headers,
)
from esb.adapters.soap.wsdlcache import CACHE_FOLDER, WsdlCache
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, DeliveryError, PermanentError, TransientError
from esb.bus.reply import Reply
from esb.bus.xmlsafe import XmlError, parse_xml


class SoapOutbound:
    """Sends each envelope as one call of ``settings.operation``."""

    def __init__(self, settings: SoapOutboundSettings, ctx: OutboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        wsdl = settings.wsdl
        self._wsdl = wsdl if urlparse_scheme(wsdl) else str(ctx.config_dir / wsdl)
        if urlparse_scheme(wsdl) in ("http", "https"):
            check_host(wsdl, ctx.allowed_hosts, "wsdl")
        if settings.address:
            check_host(settings.address, ctx.allowed_hosts, "address")
        self.auth = build_outbound_auth(settings.auth, ctx.http, ctx.allowed_hosts)
        self._client: zeep.AsyncClient | None = None
        self._proxy: AsyncServiceProxy | None = None
        self._binding: SoapBinding | None = None
        self._address = ""
        self._what = ""

    # -- lifecycle -------------------------------------------------------------------------

    def _build(self) -> zeep.AsyncClient:
        s = self.settings
        # The service's origin: that of ``address``, else of the WSDL URL (a file has none).
        service = s.address or (self._wsdl if urlparse_scheme(self._wsdl) else None)
        transport = HttpxTransport(self.ctx.http, s.timeout, s.allow_network_wsdl,
                                   cache=WsdlCache(self.ctx.config_dir / CACHE_FOLDER),
                                   auth=self.auth, headers=s.headers,
                                   credentials_origin=service,
                                   allowed_hosts=self.ctx.allowed_hosts)
        zeep_settings = zeep.Settings(strict=s.strict, raw_response=True, xml_huge_tree=False,
                                      forbid_dtd=True, forbid_entities=True,
                                      forbid_external=not s.allow_network_wsdl)
        wsse = UsernameToken(s.wsse.username, s.wsse.password.get_secret_value(),
                             use_digest=s.wsse.digest) if s.wsse else None
        return zeep.AsyncClient(self._wsdl, wsse=wsse, transport=transport,
                                settings=zeep_settings)

    async def start(self) -> None:
        """Load the WSDL (in a thread: zeep loads synchronously) and bind the port."""
        s = self.settings
        try:
            client = await asyncio.to_thread(self._build)
        except ConfigError:
            raise  # an imported document's host is not on the allow-list
        except (NetworkWsdlForbidden, WsdlUnavailable) as exc:
            raise ConfigError([f"wsdl: {exc}"]) from exc
        except Exception as exc:
            shown = redact_url(self._wsdl) if urlparse_scheme(self._wsdl) else self._wsdl
            raise ConfigError([f"wsdl: cannot load {shown}: {exc}"]) from exc
        try:
            service = client.wsdl.services[s.service] if s.service \
                else next(iter(client.wsdl.services.values()))
            port = service.ports[s.port] if s.port else next(iter(service.ports.values()))
        except (KeyError, StopIteration) as exc:
            raise ConfigError([f"wsdl: no service/port {s.service!r}/{s.port!r}"]) from exc
        binding = port.binding
        if not isinstance(binding, SoapBinding):
            raise ConfigError([f"wsdl: port {port.name!r} is not a SOAP binding"])
        if s.operation not in binding.all():
            raise ConfigError([f"operation: {s.operation!r} is not in port {port.name!r} "
                               f"(has {', '.join(sorted(binding.all()))})"])
        self._address = s.address or port.binding_options.get("address") or ""
        check_host(self._address, self.ctx.allowed_hosts, "address")
        #: How a failure names the call (redacting the address is ~30 µs: done once).
        self._what = f"SOAP {s.operation} at {redact_url(self._address)}"
        self._client, self._binding = client, binding
        self._proxy = AsyncServiceProxy(client, binding, address=self._address)

    async def stop(self) -> None:
        self._client = self._proxy = self._binding = None  # the pool belongs to the runtime

    # -- delivery --------------------------------------------------------------------------

    async def send(self, envelope: Envelope) -> int:
        return (await self._call(envelope))[0]

    async def request(self, envelope: Envelope) -> Reply:
        """Request/reply: the operation's output message (the SOAP Body's element) as XML;
        a fault raises as :meth:`send` does, with the fault string."""
        status, content = await self._call(envelope)
        try:
            doc = parse_xml(content, max_bytes=None)
        except XmlError as exc:
            raise TransientError(f"SOAP {self.settings.operation}: the answer is not XML: "
                                 f"{exc}", status=status) from exc
        body = doc.find(f"{{{SOAP11_ENV}}}Body")
        if body is None:
            body = doc.find(f"{{{SOAP12_ENV}}}Body")
        element = next((c for c in body if isinstance(c.tag, str)), None) \
            if body is not None else None
        # (the parsed answer is this call's alone: its children are moved, not copied)
        out = etree.tostring(detached(element, take=True)) if element is not None else b""
        return Reply(status, {}, out, "application/xml")

    async def _call(self, envelope: Envelope) -> tuple[int, bytes]:
        """The call's HTTP status and answer body, once its fault and status are checked."""
        if self._proxy is None:
            await self.start()
        what = self._what
        # Secrets (auth, credentials in the address) a message may carry are scrubbed on the
        # error paths only, as the rest adapter does.
        try:
            # SOAP has no field for it: the key rides as an HTTP header, as with rest.
            with call_headers({"Idempotency-Key": header_safe(envelope.key)}):
                if self.settings.mode == "typed":
                    response = await self._typed(envelope)
                else:
                    response = await self._raw(envelope)
            if isinstance(response, Reply):  # a 2xx answer of the client's short path
                status, content = response.status or 200, response.body
            else:
                status, content = response.status_code, response.content
            self._check_fault(content, status, what)  # (faults first, whatever the status)
            if not isinstance(response, Reply):
                raise_for_status(response, what)
        except httpx.HTTPError as exc:
            with scrubbed(self.auth, url=self._address):
                raise transport_error(exc, what) from exc
        except DeliveryError:
            with scrubbed(self.auth, url=self._address):
                raise
        return status, content

    async def _typed(self, envelope: Envelope) -> httpx.Response:
        if not isinstance(envelope.data, dict):
            raise PermanentError("typed SOAP delivery needs a JSON object as data "
                                 f"(got {type(envelope.data).__name__})")
        assert self._proxy is not None
        try:
            return await self._proxy[self.settings.operation](**envelope.data)
        except (TypeError, ValueError, zeep.exceptions.ValidationError) as exc:
            raise PermanentError(f"cannot build {self.settings.operation} from the envelope "
                                 f"data: {exc}") from exc

    async def _raw(self, envelope: Envelope) -> httpx.Response | Reply:
        data = envelope.data
        raw = data.encode() if isinstance(data, str) else data
        if not isinstance(raw, bytes) or not raw.strip():
            raise PermanentError("raw SOAP delivery needs an XML body element as data")
        try:
            # (text is parsed as the text it is, UTF-8 whatever its declaration says)
            body = parse_xml(data if isinstance(data, str) else raw, max_bytes=None)
        except XmlError as exc:
            raise PermanentError(f"envelope data is not a well-formed XML element: {exc}"
                                 ) from exc
        assert self._binding is not None and self._client is not None
        soap12 = isinstance(self._binding, Soap12Binding)
        version: Version = "1.2" if soap12 else "1.1"
        action = self._binding.get(self.settings.operation).soapaction or ""
        action = envelope.esbheaders.get("soapaction") or action
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'} \
            if soap12 else {"Content-Type": "text/xml; charset=utf-8",
                            "SOAPAction": f'"{action}"'}
        transport: HttpxTransport = self._client.transport
        if self._client.wsse is None:
            # The checked element's own bytes go into the envelope as they are (no tree
            # built and serialized again) when nothing else is in them.
            element = element_bytes(raw, body, text=isinstance(data, str))
            if element is not None:
                return await transport.post_answer(self._address,
                                                   envelope_bytes(version, element), headers)
        doc = soap_envelope(version, body)
        if self._client.wsse is not None:
            doc, headers = self._client.wsse.apply(doc, headers)
        return await transport.post_answer(self._address, etree_to_string(doc), headers)

    def _check_fault(self, content: bytes, status: int, what: str) -> None:
        """A SOAP fault in the answer, whatever its HTTP status: Client/Sender permanent,
        others transient (a fault the configuration maps has that status)."""
        fault = self._fault(content)
        if fault is None:
            return
        message = f"{what}: SOAP fault {fault.code}: {fault.message}"
        mapped = self.settings.fault_status.get(fault_name(fault.code))
        if mapped is not None:  # a fault the configuration gives an HTTP meaning to
            raise PermanentError(message, status=mapped) from fault
        kind = PermanentError if is_permanent_code(fault.code) else TransientError
        raise kind(message, status=status, fault=f"{fault.code}: {fault.message}") from fault

    def _fault(self, content: bytes) -> zeep.exceptions.Fault | None:
        if not content or b"Fault" not in content:
            return None
        try:
            doc = parse_xml(content, max_bytes=None)
        except XmlError:
            return None
        if not any(doc.find(f"{{{ns}}}Body/{{{ns}}}Fault") is not None
                   for ns in (SOAP11_ENV, SOAP12_ENV)):
            return None
        assert self._binding is not None
        try:
            self._binding.process_error(doc, self._binding.get(self.settings.operation))
        except zeep.exceptions.Fault as fault:
            return fault
        return None


def urlparse_scheme(value: str) -> str:
    """The URL scheme of ``value`` (``""`` for a file path)."""
    scheme, sep, _ = value.partition("://")
    return scheme.lower() if sep and scheme.isalpha() else ""
