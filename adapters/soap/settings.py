"""Settings of the soap adapter (validated at load time)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from esb.adapters.auth.settings import InboundAuth, OutboundAuth
from esb.adapters.spec import AdapterSettings


class SoapInboundSettings(AdapterSettings):
    """A SOAP 1.1/1.2 endpoint serving the WSDL it was given."""

    path: str = Field(pattern=r"^/")
    #: WSDL 1.1 file (document/literal); relative paths resolve against the configuration
    #: folder. Schemas are embedded in ``wsdl:types`` or imported from local files by relative
    #: ``schemaLocation`` (served at ``?xsd=NAME``).
    wsdl: str
    #: How acknowledgements are filled: ``field: value`` for every operation, or
    #: ``OperationName: {field: value}`` for one. ``$id``, ``$type``, ``$time`` ... are
    #: envelope attributes; other values are literals. See ``ack.py`` for the defaults.
    ack: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    #: CloudEvents ``source``; the endpoint name when not given.
    source: str | None = None
    max_body: int = Field(1_048_576, ge=1)
    #: Who may call (``api_key``, ``basic`` or ``jwt``); applies to ``?wsdl`` too. A refused
    #: call is answered with a Client/Sender fault and HTTP 401 plus ``WWW-Authenticate``.
    auth: InboundAuth | None = None

    def ack_for(self, operation: str) -> dict[str, str]:
        """The ``ack`` mapping that applies to ``operation``."""
        common = {k: v for k, v in self.ack.items() if isinstance(v, str)}
        specific = self.ack.get(operation)
        return {**common, **specific} if isinstance(specific, dict) else common


class WsseSettings(AdapterSettings):
    """WS-Security UsernameToken."""

    username: str
    password: SecretStr
    #: PasswordDigest (nonce + created + SHA-1) instead of PasswordText.
    digest: bool = False


class SoapOutboundSettings(AdapterSettings):
    """Calls one operation of a SOAP service described by a WSDL (with zeep)."""

    #: Local file (relative to the configuration folder) or URL.
    wsdl: str
    #: Loading the WSDL (and its imports) over HTTP needs this on.
    allow_network_wsdl: bool = False
    operation: str
    service: str | None = None
    port: str | None = None
    #: Endpoint URL instead of the WSDL's soap:address.
    address: str | None = None
    #: ``typed``: the envelope's JSON object becomes the operation's parameters;
    #: ``raw``: the envelope's data is the XML body element, sent as is.
    mode: Literal["typed", "raw"] = "typed"
    timeout: float = Field(30.0, gt=0)
    #: zeep's strict parsing of the WSDL/XSD.
    strict: bool = True
    #: WS-Security UsernameToken in the SOAP header (works alongside ``auth``).
    wsse: WsseSettings | None = None
    #: HTTP credentials: ``api_key``, ``basic``, ``bearer`` or ``oauth2`` (client credentials),
    #: sent with every call, and with WSDL/XSD fetches from the service's own origin.
    auth: OutboundAuth | None = None
    #: Extra HTTP headers, sent like ``auth``; ``Content-Type`` and ``SOAPAction`` stay the
    #: binding's.
    headers: dict[str, str] = Field(default_factory=dict)
    #: Fault codes (without prefix, e.g. ``Client.PatientNotFound``) that mean an HTTP status
    #: to a request/reply caller (``404``: not found); such a fault is permanent, and a REST
    #: caller is answered with that status instead of 502.
    fault_status: dict[str, int] = Field(default_factory=dict)

    @field_validator("fault_status")
    @classmethod
    def _statuses(cls, v: dict[str, int]) -> dict[str, int]:
        for code, status in v.items():
            if not 400 <= status <= 599:
                raise ValueError(f"{code}: {status} is not an HTTP error status (400-599)")
        return v
