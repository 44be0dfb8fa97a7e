"""The one reading of a payload: bytes + content type → data, JSON/XML classification, a
file's type, and field paths into an envelope."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.bus.envelope import Envelope
from esb.bus.payload import (
    JSON,
    MISSING,
    OCTETS,
    TEXT,
    XML,
    PayloadError,
    declares_other_than_utf8,
    decode,
    field,
    guess_content_type,
    is_json,
    is_utf8,
    is_xml,
    lookup,
    media_type,
    read_file,
    scalar,
)


def test_content_types_are_classified_once() -> None:
    for ct in ("application/json", "Application/JSON; charset=utf-8", "application/ld+json",
               None):
        assert is_json(ct), ct
    for ct in ("application/xml", "text/xml; charset=ISO-8859-1", "application/soap+xml"):
        assert is_xml(ct) and not is_json(ct), ct
    assert not is_json("text/plain") and not is_xml("text/plain") and not is_xml(None)
    assert media_type('Text/XML; Charset="UTF-8"') == ("text/xml", {"charset": "UTF-8"})
    assert media_type(None) == ("", {})
    env = Envelope(source="s", type="t", datacontenttype="application/cloudevents+json")
    assert env.is_json and not env.is_xml


def test_json_parses_and_malformed_json_is_refused() -> None:
    assert decode(b'{"a": [1, 2]}', "application/json; charset=latin-1") == {"a": [1, 2]}
    with pytest.raises(PayloadError) as info:
        decode(b"{nope", JSON)
    assert info.value.title == "Malformed JSON" and "not valid JSON" in info.value.detail


def test_xml_is_text_when_utf8_and_kept_as_bytes_in_its_own_encoding() -> None:
    assert decode("<a>é</a>".encode(), XML) == "<a>é</a>"
    latin = '<?xml version="1.0" encoding="ISO-8859-1"?><a>é</a>'.encode("latin-1")
    assert decode(latin, "text/xml") == latin  # the declaration names it; never re-encoded
    assert decode(latin, "text/xml; charset=ISO-8859-1") == latin
    with pytest.raises(PayloadError, match="not valid UTF-8") as info:
        decode(latin, "application/xml; charset=utf-8")
    assert info.value.title == "Bad encoding"


def test_text_is_text_in_utf8_and_bytes_in_any_other_charset() -> None:
    assert decode("hé".encode(), TEXT) == "hé"
    assert decode("hé".encode("latin-1"), "text/plain; charset=ISO-8859-1") == \
        "hé".encode("latin-1")
    with pytest.raises(PayloadError, match="UTF-8"):
        decode(b"\xff\xfe", "text/csv")


def test_anything_else_or_no_content_type_stays_bytes() -> None:
    assert decode(b"\x00\x01", OCTETS) == b"\x00\x01"
    assert decode(b'{"a": 1}', None) == b'{"a": 1}'
    assert decode(b"x", "image/png") == b"x"


@pytest.mark.parametrize(("name", "body", "expected"), [
    ("a.JSON", b"whatever", JSON),
    ("a.xml", b"", XML), ("a.soap", b"", XML), ("a.xsd", b"", XML), ("a.xsl", b"", XML),
    ("a.txt", b"{}", TEXT), ("a.csv", b"a,b", "text/csv"),
    ("-", b'  {"a": 1}', JSON), ("-", b"[1, 2]", JSON),
    ("-", b"[INFO] started", TEXT),  # looks like JSON, is not: text
    ("-", b"<a/>", XML), ("order", b"plain words", TEXT),
    ("blob", b"\xff\xfe\x00", OCTETS),
])
def test_a_files_type_from_suffix_then_content(name: str, body: bytes, expected: str) -> None:
    assert guess_content_type(name, body) == expected


def test_read_file_guesses_and_decodes(tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_bytes(b'{"n": 1}')
    assert read_file(path) == (JSON, {"n": 1})
    assert read_file(path, TEXT) == (TEXT, '{"n": 1}')


def test_field_paths_take_attributes_keys_and_list_indexes() -> None:
    env = Envelope(source="shop", type="order", subject="PO-1", idempotencykey="k1",
                   data={"customer": {"id": 7}, "items": [{"sku": "A"}, {"sku": "B"}],
                         "flag": True},
                   extensions={"tenant": "acme"})
    assert field(env, "subject") == "PO-1"
    assert field(env, "$data.customer.id") == 7
    assert field(env, "data.items.1.sku") == "B"
    assert field(env, "key") == "k1"
    assert field(env, "tenant") == "acme"  # an extension attribute
    assert field(env, "data") == env.data
    for missing in ("data.items.2.sku", "data.items.x", "data.nope", "nope", "esbhops",
                    "extensions", "data.customer.id.more", "correlationid.x"):
        assert field(env, missing) is MISSING, missing
    assert field(env, "correlationid") is None  # an attribute that is not set: null
    assert lookup({"a": [0, {"b": None}]}, "a.1.b") is None
    assert not MISSING and repr(MISSING) == "MISSING"


def test_scalar_refuses_objects_lists_and_missing() -> None:
    assert scalar(7) == "7" and scalar("x") == "x" and scalar(True) == "true"
    assert scalar(12.5) == "12.5"
    for nothing in (MISSING, None, {"a": 1}, [1]):
        assert scalar(nothing) is None


@pytest.mark.parametrize(("name", "utf8"), [(None, True), ("UTF-8", True), ("utf8", True),
                                            ("U8", True), ("ISO-8859-1", False),
                                            ("UTF-16", False), ("EBCDIC-US", False), ("", False)])
def test_utf8_in_any_spelling(name: str | None, utf8: bool) -> None:
    assert is_utf8(name) is utf8


@pytest.mark.parametrize(("head", "other"), [
    (b'<?xml version="1.0" encoding="UTF-16"?><r/>', True),
    (b"\xef\xbb\xbf<?xml version='1.0' encoding='latin-1'?><r/>", True),
    (b'<?xml version="1.0" encoding="utf-8"?><r/>', False),
    (b'<?xml version="1.0"?><r/>', False),
    (b'<r encoding="UTF-16"/>', False),
])
def test_an_xml_declaration_naming_another_encoding(head: bytes, other: bool) -> None:
    assert declares_other_than_utf8(head) is other
