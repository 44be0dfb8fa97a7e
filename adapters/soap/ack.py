"""The acknowledgement an inbound operation answers with, once the bus confirmed.

Each child the WSDL declares for the operation's output element is filled, in schema order:

1. from the ``ack`` setting when it names the field (``$id``, ``$type``, ``$time`` ... are
   envelope attributes, ``$$`` a literal ``$``, anything else a literal);
2. by name: ``id``/``messageId``/``trackingId``/``envelopeId``/``ackId``/``receiptId``/
   ``referenceId`` → the envelope id; ``status``/``state``/``result`` → ``ACCEPTED`` (or the
   first enumeration value, or ``true`` for a boolean); ``timestamp``/``receivedAt`` → time;
   ``correlationId`` → the correlation id (else the envelope id);
3. by echoing the request's child of the same name;
4. required fields left over get a neutral value of their type; optional ones are omitted.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from esb.adapters.soap.schema import Child
from esb.bus.envelope import Envelope

_ID_NAMES = {"id", "messageid", "trackingid", "envelopeid", "ackid", "receiptid",
             "referenceid"}
_STATUS_NAMES = {"status", "state", "result"}
_TIME_NAMES = {"timestamp", "receivedat", "acceptedat"}
_NUMERIC = {"int", "integer", "long", "short", "byte", "decimal", "float", "double",
            "nonNegativeInteger", "positiveInteger", "unsignedInt", "unsignedLong",
            "unsignedShort", "unsignedByte"}


def _attribute(envelope: Envelope, name: str) -> str:
    if name == "time":
        return envelope.time.isoformat()
    value: Any = getattr(envelope, name, None)
    return "" if value is None else str(value)


def _literal(envelope: Envelope, value: str) -> str:
    if value.startswith("$$"):
        return value[1:]
    if value.startswith("$"):
        return _attribute(envelope, value[1:])
    return value


def _neutral(child: Child, envelope: Envelope) -> str:
    if child.enumeration:
        return child.enumeration[0]
    if child.base == "boolean":
        return "true"
    if child.base in _NUMERIC:
        return "1" if child.base == "positiveInteger" else "0"
    if child.base == "dateTime":
        return envelope.time.isoformat()
    if child.base == "date":
        return envelope.time.date().isoformat()
    return ""


def _by_name(child: Child, envelope: Envelope) -> str | None:
    name = etree.QName(child.tag).localname.lower()
    if name in _ID_NAMES:
        return envelope.id
    if name in _STATUS_NAMES:
        if child.base == "boolean":
            return "true"
        if child.enumeration and "ACCEPTED" not in child.enumeration:
            return child.enumeration[0]
        return "ACCEPTED"
    if name in _TIME_NAMES:
        return envelope.time.isoformat()
    if name == "correlationid":
        return envelope.correlationid or envelope.id
    return None


def build_ack(output: str, fields: list[Child], mapping: dict[str, str], envelope: Envelope,
              request: etree._Element) -> etree._Element:
    """The operation's response element for ``envelope``."""
    ns = etree.QName(output).namespace
    root = etree.Element(output, nsmap={"tns": ns} if ns else None)
    echo = {etree.QName(c).localname: c.text for c in request if isinstance(c.tag, str)}
    for child in fields:
        local = etree.QName(child.tag).localname
        if local in mapping:
            value: str | None = _literal(envelope, mapping[local])
        else:
            value = _by_name(child, envelope)
            if value is None and echo.get(local) is not None:
                value = echo[local]
            if value is None and child.required:
                value = _neutral(child, envelope)
        if value is not None:
            etree.SubElement(root, child.tag).text = value
    if not fields:  # no declared structure: the mapping alone, in the output's namespace
        for local, value in mapping.items():
            tag = f"{{{ns}}}{local}" if ns else local
            etree.SubElement(root, tag).text = _literal(envelope, value)
    return root
