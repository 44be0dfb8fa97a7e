"""The shared hardened parser (esb.bus.xmlsafe)."""

from __future__ import annotations

import pytest

from esb.bus.xmlsafe import LIBXML_MAX_DEPTH, BadXml, UnsafeXml, XmlError, parse_xml


def nested(depth: int) -> str:
    return "<a>" * depth + "</a>" * depth


def test_parses_text_and_bytes_with_declarations() -> None:
    latin = '<?xml version="1.0" encoding="ISO-8859-1"?><r>caf\xe9</r>'
    assert parse_xml(latin.encode("latin-1")).text == "café"
    # Text was decoded already: its declaration's encoding is ignored.
    assert parse_xml(latin).text == "café"


@pytest.mark.parametrize("data", ["", "   ", "<a>", "<a></b>", "not xml", "<a/><b/>"])
def test_malformed_is_bad_xml(data: str) -> None:
    with pytest.raises(BadXml):
        parse_xml(data)


def test_errors_are_value_errors() -> None:
    assert issubclass(UnsafeXml, ValueError) and issubclass(BadXml, XmlError)


def test_size_limit_counts_bytes() -> None:
    parse_xml("<r>" + "é" * 10 + "</r>", max_bytes=27)
    with pytest.raises(UnsafeXml, match="larger than 26 bytes"):
        parse_xml("<r>" + "é" * 10 + "</r>", max_bytes=26)


def test_depth_limit() -> None:
    parse_xml(nested(LIBXML_MAX_DEPTH))
    with pytest.raises(UnsafeXml, match="nesting deeper than 256"):
        parse_xml(nested(LIBXML_MAX_DEPTH + 1))
    parse_xml(nested(20), max_depth=20)
    with pytest.raises(UnsafeXml, match="nesting deeper than 20"):
        parse_xml(nested(21), max_depth=20)


@pytest.mark.parametrize("doc", [
    '<!DOCTYPE r><r/>',
    '<?xml version="1.0"?>\n<!-- c --><?pi x?>\n<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>',
    '\ufeff<!DOCTYPE r SYSTEM "x.dtd"><r/>',
])
def test_doctype_is_refused(doc: str) -> None:
    with pytest.raises(UnsafeXml, match="DOCTYPE"):
        parse_xml(doc)


def test_doctype_in_utf16_is_refused_after_parsing() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>'
    with pytest.raises(UnsafeXml, match="DOCTYPE"):
        parse_xml(doc.encode("utf-16"))


def test_doctype_text_inside_content_is_fine() -> None:
    assert parse_xml("<r><![CDATA[<!DOCTYPE x>]]></r>").text == "<!DOCTYPE x>"
