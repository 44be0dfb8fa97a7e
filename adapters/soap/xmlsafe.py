"""Hardened XML parsing: no entity expansion, no DTD, no network, no huge trees."""

from __future__ import annotations

from copy import deepcopy

from lxml import etree

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"


class UnsafeXml(ValueError):
    """The document carries a DOCTYPE (entities, external DTDs) and is refused."""


def hardened_parser(resolver: etree.Resolver | None = None) -> etree.XMLParser:
    """A parser that never resolves entities, loads DTDs or touches the network."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_blank_text=False)
    if resolver is not None:
        parser.resolvers.add(resolver)
    return parser


def parse(data: bytes, parser: etree.XMLParser | None = None,
          base_url: str | None = None) -> etree._Element:
    """Parse ``data``; raises ``etree.XMLSyntaxError`` or :class:`UnsafeXml`."""
    root = etree.fromstring(data, parser or hardened_parser(), base_url=base_url)
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:
        raise UnsafeXml("DOCTYPE declarations are not allowed")
    return root


def detached(element: etree._Element, drop_ns: tuple[str, ...] = (SOAP11_ENV, SOAP12_ENV)
             ) -> etree._Element:
    """A standalone copy of ``element`` keeping the namespaces in scope (minus ``drop_ns``),
    so prefixes used in attribute values (``xsi:type="tns:T"``) still resolve."""
    nsmap = {p: u for p, u in element.nsmap.items() if u not in drop_ns}
    copy = etree.Element(element.tag, attrib=dict(element.attrib), nsmap=nsmap)
    copy.text = element.text
    for child in element:
        copy.append(deepcopy(child))
    return copy
