"""The shared hardened parser (esb.bus.xmlsafe)."""

from __future__ import annotations

import threading

import pytest

from esb.bus.xmlsafe import (
    LIBXML_MAX_DEPTH,
    SHARED_MAX_BYTES,
    BadXml,
    UnsafeXml,
    XmlError,
    XmlLimits,
    parse_xml,
)


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


# ------------------------------------------------------------------- shared (read-only) trees

ORDER = "<o:order xmlns:o='urn:o'><o:sku>A-1</o:sku><o:total>9.5</o:total></o:order>"


def test_a_shared_parse_of_the_same_object_under_the_same_limits_is_the_same_tree() -> None:
    data = ORDER + " "  # a new object: not an interned constant
    first = parse_xml(data, shared=True)
    assert parse_xml(data, shared=True) is first
    # an equal payload that is another object, other limits, or a reader that did not say
    # shared: parsed anew
    assert parse_xml("".join([ORDER, " "]), shared=True) is not first
    data2 = ORDER + "  "
    tree = parse_xml(data2, shared=True)
    assert parse_xml(data2, shared=True, max_depth=10) is not tree
    assert parse_xml(data2, shared=True, limits=XmlLimits(max_elements=50)) is not tree
    assert parse_xml(data2) is not parse_xml(data2)


def test_a_shared_tree_still_answers_to_the_readers_size_cap() -> None:
    data = ORDER + " "
    parse_xml(data, shared=True)
    with pytest.raises(UnsafeXml, match="larger than 20 bytes"):
        parse_xml(data, shared=True, max_bytes=20)


def test_a_refused_document_is_refused_again_not_remembered() -> None:
    data = "<a><b></a>" + " "
    for _ in range(2):
        with pytest.raises(BadXml):
            parse_xml(data, shared=True)


def test_only_small_documents_are_kept_and_only_on_the_main_thread() -> None:
    big = "<r>" + "<i>x</i>" * (SHARED_MAX_BYTES // 8) + "</r>"
    assert parse_xml(big, shared=True) is not parse_xml(big, shared=True)
    data = ORDER + " "
    mine = parse_xml(data, shared=True)
    theirs: list[object] = []

    def twice() -> None:
        theirs.extend([parse_xml(data, shared=True), parse_xml(data, shared=True)])

    worker = threading.Thread(target=twice)
    worker.start()
    worker.join()
    assert theirs[0] is not theirs[1] and mine not in theirs
    assert parse_xml(data, shared=True) is mine


def test_mutable_payloads_are_parsed_every_time() -> None:
    data = bytearray(b"<o><total>250</total></o>")
    assert parse_xml(data, shared=True).findtext("total") == "250"
    data[:] = b"<o><total>5</total></o>"
    assert parse_xml(data, shared=True).findtext("total") == "5"
