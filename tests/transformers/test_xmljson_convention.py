"""The XML ↔ JSON convention: examples, options and a round-trip property."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
import pytest
from esbtest.cycles import CyclesLeft
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError
from esb.bus.xmlsafe import parse_xml
from esb.transformers.chain import build_chain
from esb.transformers.convention import XmlToJson, json_to_element

DATA = Path(__file__).parent / "data"


def c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n")


def step(spec: Any, data: Any, content_type: str) -> Envelope:
    env = Envelope(source="t", type="t", datacontenttype=content_type, data=data)
    return build_chain([spec], base_dir=DATA)(env)


def test_documented_example() -> None:
    xml = ('<o:order xmlns:o="urn:o" id="7"><o:line sku="A">2</o:line><o:line sku="B"/>'
           '<o:note>rush</o:note><o:empty/></o:order>')
    out = step("xml-to-json", xml, "application/xml")
    assert out.datacontenttype == "application/json"
    assert out.data == {"o:order": {
        "@xmlns:o": "urn:o", "@id": "7",
        "o:line": [{"@sku": "A", "#text": "2"}, {"@sku": "B"}],
        "o:note": "rush", "o:empty": None}}
    back = step("json-to-xml", out.data, "application/json")
    assert back.datacontenttype == "application/xml"
    assert c14n(parse_xml(back.data)) == c14n(parse_xml(xml))


def test_soap_sample_round_trips() -> None:
    original = parse_xml((DATA / "soap_order.xml").read_bytes())
    as_json = XmlToJson().document(original)
    assert as_json["soap:Envelope"]["@xmlns:soap"].startswith("http://schemas.xmlsoap.org")
    assert as_json["soap:Envelope"]["soap:Header"]["ord:Auth"]["@soap:mustUnderstand"] == "1"
    rebuilt = json_to_element(orjson.loads(orjson.dumps(as_json)))
    strip = etree.XMLParser(remove_blank_text=True)
    expected = etree.fromstring(etree.tostring(original), strip)
    assert c14n(rebuilt) == c14n(expected)


def test_force_list_types_and_strip_namespaces() -> None:
    xml = ('<p:order xmlns:p="urn:p" p:rush="true"><p:line><p:qty>2</p:qty>'
           '<p:price>1.50</p:price><p:gift>0</p:gift></p:line></p:order>')
    spec = {"xml-to-json": {"force_list": ["line"], "strip_namespaces": True,
                            "types": {"qty": "integer", "price": "number", "gift": "boolean",
                                      "@rush": "boolean"}}}
    assert step(spec, xml, "application/xml").data == {
        "order": {"@rush": True, "line": [{"qty": 2, "price": 1.5, "gift": False}]}}


def test_types_from_an_xsd() -> None:
    xml = '<order id="1" priority="3"><line sku="a"><qty>4</qty><price>2.5</price></line></order>'
    spec = {"xml-to-json": {"types": "schemas/order.xsd"}}
    assert step(spec, xml, "application/xml").data == {"order": {
        "@id": "1", "@priority": 3, "line": [{"@sku": "a", "qty": 4, "price": "2.5"}]}}
    # price's type lives in an included file, which the shallow reading does not follow.


def test_bad_typed_value_names_the_element() -> None:
    with pytest.raises(TransformError, match=r"qty: 'many' is not a valid integer"):
        step({"xml-to-json": {"types": {"qty": "integer"}}}, "<r><qty>many</qty></r>",
             "application/xml")


def test_json_to_xml_root_namespaces_and_values() -> None:
    data = {"id": 5, "ok": True, "ratio": 0.5, "none": None, "tags": ["a", "b"],
            "x:ref": {"@x:kind": "k", "#text": "r"}}
    out = step({"json-to-xml": {"root": "doc", "namespaces": {"": "urn:d", "x": "urn:x"},
                                "xml_declaration": False}}, data, "application/json")
    assert out.data == ('<doc xmlns="urn:d" xmlns:x="urn:x"><id>5</id><ok>true</ok>'
                        '<ratio>0.5</ratio><none/><tags>a</tags><tags>b</tags>'
                        '<x:ref x:kind="k">r</x:ref></doc>')


@pytest.mark.parametrize(("data", "message"), [
    ({"a": 1, "b": 2}, "exactly one key"),
    ({"p:a": 1}, "prefix 'p' is not declared"),
    ({"a": {"b": [[1]]}}, "arrays of arrays"),
    ({"a": {"@x": {"y": 1}}}, "cannot be text or an attribute"),
    ({"1bad": "x"}, "1bad"),
])
def test_json_to_xml_errors(data: Any, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        step("json-to-xml", data, "application/json")


def test_wrong_payload_kind_names_the_fix() -> None:
    with pytest.raises(TransformError, match="add json-to-xml before it"):
        step("xml-to-json", {"a": 1}, "application/json")
    with pytest.raises(TransformError, match="add xml-to-json before it"):
        step("json-to-xml", "<a/>", "application/xml")


# -- round-trip property ----------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "item", "x-y", "n.1", "_z"])
#: Text XML can carry: no surrogates, no control characters, and not U+FFFE or U+FFFF (not
#: XML characters: lxml refuses them, so the example would fail before the convention runs).
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                             exclude_characters="\ufffe\uffff"), max_size=8)
SOLID = TEXT.filter(lambda t: t.strip() != "")
NAMESPACES = st.fixed_dictionaries({}, optional={None: st.just("urn:default"),
                                                 "p": st.just("urn:p")})


GROUPS = st.lists(st.tuples(NAMES, st.integers(1, 3)), max_size=3, unique_by=lambda g: g[0])
MAYBE_SOLID = st.none() | SOLID
MAYBE_TEXT = st.none() | TEXT


@functools.cache
def _in_scope(prefixes: tuple[str, ...]) -> tuple[st.SearchStrategy[str], st.SearchStrategy]:
    """An element's prefix and its attributes, given the prefixes in scope. Built once per
    scope: Hypothesis validates every new strategy object, which costs more than drawing."""
    prefix = st.sampled_from(("", *prefixes))
    return prefix, st.dictionaries(st.tuples(prefix, NAMES), TEXT, max_size=3)


@functools.cache
def elements(depth: int = 0, prefixes: tuple[str, ...] = ()) -> st.SearchStrategy[dict]:
    """An element spec (see :func:`build`) at `depth`, with `prefixes` declared above it."""
    return _element(depth, prefixes)


@st.composite
def _element(draw: st.DrawFn, depth: int, prefixes: tuple[str, ...]) -> dict:
    nsmap = draw(NAMESPACES) if depth == 0 else {}
    prefixes = prefixes + tuple(p for p in nsmap if p)
    prefix_of, attrs_of = _in_scope(prefixes)
    prefix = draw(prefix_of)
    attrs = draw(attrs_of)
    groups = [] if depth >= 3 else draw(GROUPS)
    children = [draw(elements(depth + 1, prefixes)) | {"local": name}
                for name, count in groups for _ in range(count)]
    # Same-named siblings are adjacent by construction; a group also needs one prefix.
    for child in children:
        child["prefix"] = prefix
    text = draw(MAYBE_SOLID if children else MAYBE_TEXT)
    return {"nsmap": nsmap, "prefix": prefix, "local": draw(NAMES), "attrs": attrs,
            "text": text, "children": children}


def build(spec: dict, parent: etree._Element | None = None,
          scope: dict | None = None) -> etree._Element:
    scope = {**(scope or {}), **spec["nsmap"]}
    uri = scope.get(spec["prefix"] or None)
    tag = f"{{{uri}}}{spec['local']}" if uri else spec["local"]
    el = (etree.Element(tag, nsmap=spec["nsmap"]) if parent is None
          else etree.SubElement(parent, tag))
    for (prefix, name), value in spec["attrs"].items():
        el.set(f"{{{scope[prefix]}}}{name}" if prefix else name, value)
    el.text = spec["text"]
    for child in spec["children"]:
        build(child, el, scope)
    return el


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(elements())
def test_xml_json_xml_round_trips(spec: dict) -> None:
    original = parse_xml(etree.tostring(build(spec)))
    as_json = orjson.loads(orjson.dumps(XmlToJson().document(original)))
    assert c14n(json_to_element(as_json)) == c14n(original)


# -- JSON -> XML -> JSON property -------------------------------------------------------------

#: Text XML can carry as is (no control characters; nothing unassigned, so no U+FFFE/U+FFFF).
XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")),
                   max_size=8)
#: Children whose values are typed by hints (``integer``, ``boolean``) rather than strings.
TYPED: dict[str, Any] = {"qty": "integer", "flag": "boolean"}
TYPED_VALUES = {"qty": st.integers(-10**12, 10**12), "flag": st.booleans()}


def several(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One value, or an array of two or more (one item comes back as the bare item)."""
    return values | st.lists(values, min_size=2, max_size=3)


NON_EMPTY_TEXT = XML_TEXT.filter(bool)
MAYBE_TEXT_BY_CHILDREN = st.none() | SOLID
MAYBE_TEXT_ALONE = st.none() | NON_EMPTY_TEXT
TYPED_NAMES = st.sets(st.sampled_from(sorted(TYPED)), max_size=2)
SEVERAL_TYPED = {name: several(values) for name, values in TYPED_VALUES.items()}
KINDS = st.sampled_from(["null", "text", "object"])
LEAF_KINDS = st.sampled_from(["null", "text"])


@functools.cache
def json_elements(prefixes: tuple[str, ...], depth: int = 0) -> st.SearchStrategy[Any]:
    """An element's value: null, non-empty text, or an object with attributes, children
    and ``#text``. Built once per (prefixes, depth), as :func:`elements` is."""
    prefixed = st.tuples(st.sampled_from(prefixes), NAMES).map("".join)
    attrs = st.dictionaries(prefixed.map(lambda n: "@" + n), XML_TEXT, max_size=2)
    children = (st.dictionaries(prefixed, several(json_elements(prefixes, depth + 1)),
                                max_size=3) if depth < 3 else st.nothing())
    return _json_element(depth, attrs, children)


@st.composite
def _json_element(draw: st.DrawFn, depth: int, attrs_of: st.SearchStrategy[dict[str, str]],
                  children_of: st.SearchStrategy[dict[str, Any]]) -> Any:
    kind = draw(KINDS if depth < 3 else LEAF_KINDS)
    if kind == "null":
        return None
    if kind == "text":
        return draw(NON_EMPTY_TEXT)
    attrs = draw(attrs_of)
    children = draw(children_of)
    for name in draw(TYPED_NAMES):
        children[name] = draw(SEVERAL_TYPED[name])
    if not attrs and not children:
        return draw(NON_EMPTY_TEXT)
    value: dict[str, Any] = {**attrs, **children}
    text = draw(MAYBE_TEXT_BY_CHILDREN if children else MAYBE_TEXT_ALONE)
    if text is not None:
        value["#text"] = text
    return value


@st.composite
def json_documents(draw: st.DrawFn) -> dict[str, Any]:
    declared = draw(st.fixed_dictionaries({}, optional={"@xmlns": st.just("urn:default"),
                                                        "@xmlns:p": st.just("urn:p")}))
    prefixes = ("", "p:") if "@xmlns:p" in declared else ("",)
    root = draw(st.sampled_from(prefixes)) + draw(NAMES)
    content = draw(json_elements(prefixes))
    if declared:  # declarations are attributes of the root: its value is an object
        if content is None:
            content = {}
        elif isinstance(content, str):
            content = {"#text": content}
        content = {**declared, **content}
    return {root: content}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_documents())
def test_json_xml_json_round_trips(document: dict[str, Any]) -> None:
    """JSON → XML (serialized and parsed again) → JSON gives the same value back, for every
    JSON value the convention can represent:

    * one root key (the document element), never an array at the root;
    * names that are XML names, prefixed only with a prefix declared by an ``@xmlns:p`` that
      is in scope (here: on the root);
    * strings for attribute values and text; numbers and booleans only where a type hint
      names them (otherwise they come back as strings);
    * no empty string as an element's value or ``#text`` (``""`` and ``null`` are both an
      empty element, read back as ``null``), and no empty object (``{}`` is ``null`` too);
    * ``#text`` only next to attributes or children (alone, ``{"#text": "x"}`` is ``"x"``),
      and not blank next to children (whitespace between elements is layout);
    * arrays of two or more items, none an array (one item comes back bare, ``[]`` is
      nothing at all).
    """
    xml = etree.tostring(json_to_element(document))
    assert XmlToJson(types=TYPED).document(parse_xml(xml)) == document


def test_declarations_comments_and_mixed_content() -> None:
    """Namespaces declared below the root, a prefixed attribute, comments and processing
    instructions between elements, text after a child: as the convention says."""
    xml = (b'<a xmlns="urn:d" xmlns:p="urn:p"><p:b x="1" p:y="2">t<c/>tail<!-- c --><c>2</c>'
           b'</p:b><d xmlns:q="urn:q"><q:e/></d><?pi x?></a>')
    assert XmlToJson(force_list=["c"]).document(parse_xml(xml)) == {"a": {
        "@xmlns": "urn:d", "@xmlns:p": "urn:p",
        "p:b": {"@x": "1", "@p:y": "2", "#text": "ttail", "c": [None, "2"]},
        "d": {"@xmlns:q": "urn:q", "q:e": None}}}
    assert XmlToJson(strip_namespaces=True).document(parse_xml(xml)) == {"a": {
        "b": {"@x": "1", "@y": "2", "#text": "ttail", "c": [None, "2"]}, "d": {"e": None}}}


def test_one_namespace_under_two_prefixes_keeps_each_elements_own_prefix() -> None:
    """Names are worked out once per tag, except where a namespace has two prefixes."""
    converter = XmlToJson()
    xml = b'<r xmlns:a="urn:x"><a:e>1</a:e><b:e xmlns:b="urn:x">2</b:e><a:e>3</a:e></r>'
    assert converter.document(parse_xml(xml)) == {"r": {
        "@xmlns:a": "urn:x", "a:e": ["1", "3"], "b:e": {"@xmlns:b": "urn:x", "#text": "2"}}}
    # and the same converter, on a document binding that namespace to one prefix only
    assert converter.document(parse_xml(b'<b:e xmlns:b="urn:x"><b:e/></b:e>')) == {
        "b:e": {"@xmlns:b": "urn:x", "b:e": None}}


def test_many_distinct_names_do_not_grow_the_name_cache_without_bound() -> None:
    converter = XmlToJson()
    names = "".join(f"<n{i}/>" for i in range(10_000))
    converter.document(parse_xml(f"<r>{names}</r>".encode()))
    assert len(converter._names) <= XmlToJson._CACHE_LIMIT


@pytest.mark.parametrize("strip", [True, False])
def test_a_conversion_leaves_no_garbage_for_the_cyclic_collector(strip: bool) -> None:
    """The walk is a closure that calls itself; once a document is converted nothing of it
    is left in a reference cycle (the daemon collects cycles at its own pace:
    esb.bus.runtime.collector)."""
    root = parse_xml(b'<o:order xmlns:o="urn:o" id="7"><o:line sku="A">2</o:line></o:order>')
    convert = XmlToJson(strip_namespaces=strip, types={"@id": "integer"})
    convert.document(root)
    with CyclesLeft() as cycles:
        for _ in range(50):
            convert.document(root)
    assert cycles.left == 0, f"{cycles.left} objects in reference cycles after 50 conversions"
