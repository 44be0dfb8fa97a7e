"""SOAP 1.1 / 1.2 envelopes and faults for the inbound side, and fault classification for
the outbound side."""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Literal

from lxml import etree
from starlette.responses import Response

from esb.bus.payload import is_utf8

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
Version = Literal["1.1", "1.2"]
FaultKind = Literal["client", "server", "version", "mustunderstand"]

ENV_NS = {"1.1": SOAP11_ENV, "1.2": SOAP12_ENV}
#: What :func:`envelope_bytes` writes before and after the Body's element.
_ENVELOPE_HEAD = {v: (f"<?xml version='1.0' encoding='utf-8'?>\n<soap:Envelope xmlns:soap="
                      f'"{ns}"><soap:Body>').encode() for v, ns in ENV_NS.items()}
_ENVELOPE_TAIL = b"</soap:Body></soap:Envelope>"
_XML_DECLARATION = re.compile(rb"[ \t\r\n]*<\?xml[ \t\r\n][^?]*\?>")
CONTENT_TYPE = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}
_CODES = {"1.1": {"client": "Client", "server": "Server", "version": "VersionMismatch",
                 "mustunderstand": "MustUnderstand"},
          "1.2": {"client": "Sender", "server": "Receiver", "version": "VersionMismatch",
                  "mustunderstand": "MustUnderstand"}}
#: Fault codes (local part, before any ``.`` refinement) that retrying cannot fix.
PERMANENT_CODES = frozenset({"client", "sender", "versionmismatch", "mustunderstand",
                             "dataencodingunknown"})


def soap_envelope(version: Version, body: etree._Element | None,
                  header: list[etree._Element] | None = None) -> etree._Element:
    """``Envelope/Body`` in the version's namespace, holding ``body`` (and ``Header`` holding
    the ``header`` blocks when there are any)."""
    ns = ENV_NS[version]
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns})
    if header:
        etree.SubElement(env, f"{{{ns}}}Header").extend(header)
    body_node = etree.SubElement(env, f"{{{ns}}}Body")
    if body is not None:
        body_node.append(body)
    return env


def envelope_bytes(version: Version, element: bytes) -> bytes:
    """The serialized ``Envelope/Body`` (as :func:`soap_envelope` and zeep's
    ``etree_to_string`` write it) around ``element``: one element's UTF-8 bytes, as
    :func:`element_bytes` finds them."""
    return b"".join((_ENVELOPE_HEAD[version], element, _ENVELOPE_TAIL))


def element_bytes(raw: bytes, root: etree._Element, *, text: bool) -> bytes | None:
    """The bytes of ``raw``'s root element (``root``, parsed from ``raw`` — so they are
    well-formed), to be put into an envelope as they are; None when they cannot be: a
    declared encoding other than UTF-8 (``text``: ``raw`` is decoded text, UTF-8 whatever
    the declaration says), a byte-order mark, a DOCTYPE, a comment or processing instruction
    around the element. Those take the tree's path (:func:`soap_envelope`)."""
    if root.getprevious() is not None or root.getnext() is not None:
        return None
    if not text and not is_utf8(root.getroottree().docinfo.encoding or ""):
        return None
    declaration = _XML_DECLARATION.match(raw)
    element = raw[declaration.end():] if declaration else raw
    element = element.strip(b" \t\r\n")
    if not element.startswith(b"<") or element[1:2] in (b"?", b"!"):
        return None
    return element


def detached(element: etree._Element, drop_ns: tuple[str, ...] = (SOAP11_ENV, SOAP12_ENV),
             *, take: bool = False) -> etree._Element:
    """A standalone copy of ``element`` keeping the namespaces in scope (minus ``drop_ns``),
    so prefixes used in attribute values (``xsi:type="tns:T"``) still resolve. ``take``:
    ``element``'s children are moved into it, not copied (for a tree read once: its copy
    costs about as much as parsing it)."""
    nsmap = {p: u for p, u in element.nsmap.items() if u not in drop_ns}
    copy = etree.Element(element.tag, attrib=dict(element.attrib), nsmap=nsmap)
    copy.text = element.text
    if take:
        copy.extend(element)
    else:
        for child in element:
            copy.append(deepcopy(child))
    return copy


def envelope_response(version: Version, body: etree._Element | None,
                      status: int = 200, header: list[etree._Element] | None = None
                      ) -> Response:
    content = etree.tostring(soap_envelope(version, body, header), xml_declaration=True,
                             encoding="utf-8")
    return Response(content, status_code=status, media_type=CONTENT_TYPE[version])


def fault_response(version: Version, kind: FaultKind, reason: str,
                   status: int | None = None, not_understood: tuple[str, ...] = (),
                   upgrade: tuple[str, ...] = ()) -> Response:
    """A SOAP Fault. HTTP status: 500 for every SOAP 1.1 fault; for SOAP 1.2, 400 for
    ``env:Sender`` and 500 otherwise (SOAP 1.2 part 2, table 20) unless ``status`` is given.
    ``not_understood``: the header blocks (Clark notation) of a MustUnderstand fault, named in
    SOAP 1.2 ``env:NotUnderstood`` header blocks. ``upgrade``: the versions an ``env:Upgrade``
    header block of a VersionMismatch fault names."""
    ns = ENV_NS[version]
    code = f"soap:{_CODES[version][kind]}"
    fault = etree.Element(f"{{{ns}}}Fault", nsmap={"soap": ns})
    if version == "1.1":
        etree.SubElement(fault, "faultcode").text = code
        etree.SubElement(fault, "faultstring").text = reason
    else:
        value = etree.SubElement(etree.SubElement(fault, f"{{{ns}}}Code"), f"{{{ns}}}Value")
        value.text = code
        text = etree.SubElement(etree.SubElement(fault, f"{{{ns}}}Reason"), f"{{{ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = reason
    if status is None:
        status = 400 if version == "1.2" and kind == "client" else 500
    header = [_not_understood(ns, tag) for tag in not_understood] if version == "1.2" else []
    if upgrade:
        header.append(_upgrade(SOAP12_ENV, upgrade))
    return envelope_response(version, fault, status, header or None)


def _upgrade(ns: str, versions: tuple[str, ...]) -> etree._Element:
    """``<env:Upgrade>`` naming the envelope versions this node takes (SOAP 1.2 part 1,
    5.4.7), sent with a VersionMismatch fault."""
    block = etree.Element(f"{{{ns}}}Upgrade")
    for v in versions:
        env_ns = ENV_NS[v]  # type: ignore[index]
        supported = etree.SubElement(block, f"{{{ns}}}SupportedEnvelope",
                                     nsmap={"s": env_ns})
        supported.set("qname", "s:Envelope")
    return block


def _not_understood(ns: str, tag: str) -> etree._Element:
    """``<env:NotUnderstood qname="h:Local" xmlns:h="..."/>`` (SOAP 1.2 part 1, 5.4.8)."""
    qname = etree.QName(tag)
    block = etree.Element(f"{{{ns}}}NotUnderstood",
                          nsmap={"h": qname.namespace} if qname.namespace else None)
    block.set("qname", f"h:{qname.localname}" if qname.namespace else qname.localname)
    return block


def fault_name(code: str | None) -> str:
    """A fault code without its namespace prefix (``soap11env:Client.NotFound`` →
    ``Client.NotFound``)."""
    return (code or "").rpartition(":")[2]


def is_permanent_code(code: str | None) -> bool:
    """``soap:Client.Auth`` / ``env:Sender`` ... → True; Server/Receiver/unknown → False."""
    return fault_name(code).split(".", 1)[0].strip().lower() in PERMANENT_CODES
