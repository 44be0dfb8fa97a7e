"""The ``xml-to-json`` and ``json-to-xml`` transformers (convention: :mod:`.convention`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree
from pydantic import Field

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.bus.payload import XML
from esb.bus.xmlsafe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    LIBXML_MAX_DEPTH,
)
from esb.transformers.convention import ConventionError, TypeName, XmlToJson, json_to_element
from esb.transformers.payload import json_input, with_json, xml_root
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec
from esb.transformers.xsdhints import hints_from_xsd

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


class XmlToJsonSettings(TransformerSettings):
    """Options of ``xml-to-json``."""

    #: Element names (local or ``prefix:local``) that are always arrays.
    force_list: list[str] = Field(default_factory=list)
    #: ``{name: integer|number|boolean|string}`` (``@name`` for attributes), or an XSD path to
    #: read such hints (and ``force_list`` for ``maxOccurs > 1``) from.
    types: dict[str, TypeName] | str = Field(default_factory=dict)
    #: Drop prefixes and ``@xmlns`` declarations (easier to query, no longer round-trips).
    strip_namespaces: bool = False
    max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=1, le=LIBXML_MAX_DEPTH)


class JsonToXmlSettings(TransformerSettings):
    """Options of ``json-to-xml``."""

    #: Root element name; the data is then the root's content instead of ``{root: content}``.
    root: str | None = None
    #: Namespace declarations for the root (prefix → URI, ``""`` for the default namespace).
    namespaces: dict[str, str] = Field(default_factory=dict)
    xml_declaration: bool = True
    pretty: bool = False
    content_type: str = XML


def make_xml_to_json(settings: XmlToJsonSettings, ctx: TransformerContext
                     ) -> Callable[[Envelope], Envelope]:
    """Factory of ``xml-to-json``."""
    types, force = settings.types, set(settings.force_list)
    if isinstance(types, str):
        try:
            hints = hints_from_xsd(ctx.path(types, "schema"))
        except ValueError as exc:
            raise ConfigError([f"types: {exc}"]) from None
        types, force = hints.types, force | hints.force_list
    converter = XmlToJson(force_list=force, types=types,
                          strip_namespaces=settings.strip_namespaces)
    name = ctx.name

    def xml_to_json(env: Envelope) -> Envelope:
        root = xml_root(name, env, max_bytes=settings.max_bytes, max_depth=settings.max_depth,
                        limits=ctx.xml_limits)
        try:
            return with_json(env, converter.document(root))
        except ConventionError as exc:
            raise TransformError(name, str(exc)) from None

    return xml_to_json


def make_json_to_xml(settings: JsonToXmlSettings, ctx: TransformerContext
                     ) -> Callable[[Envelope], Envelope]:
    """Factory of ``json-to-xml``."""
    name = ctx.name

    def json_to_xml(env: Envelope) -> Envelope:
        value: Any = json_input(name, env)
        try:
            root = json_to_element(value, root=settings.root, namespaces=settings.namespaces)
        except ConventionError as exc:
            raise TransformError(name, str(exc)) from None
        text = etree.tostring(root, encoding="unicode", pretty_print=settings.pretty)
        if settings.xml_declaration:
            text = XML_DECLARATION + text
        return env.model_copy(update={"data": text, "datacontenttype": settings.content_type})

    return json_to_xml


XML_TO_JSON = TransformerSpec(
    name="xml-to-json",
    summary="Convert an XML payload to JSON (esb's round-tripping convention)",
    settings=XmlToJsonSettings,
    factory=make_xml_to_json,
)

JSON_TO_XML = TransformerSpec(
    name="json-to-xml",
    summary="Convert a JSON payload to XML (esb's round-tripping convention)",
    settings=JsonToXmlSettings,
    factory=make_json_to_xml,
    shorthand="root",
)
