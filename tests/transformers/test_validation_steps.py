"""The ``xsd`` and ``json-schema`` transformers, and their sandbox.

A schema can never make the step read another file or reach the network: a canary file's
content must never show up in any error, and a local TCP listener must never see a connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from esbtest.listener import Listener, listening

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.transformers.chain import build_chain

DATA = Path(__file__).parent / "data"
GOOD_XML = '<order id="1"><line sku="a"><qty>2</qty><price>1.5</price></line></order>'
GOOD_JSON = {"orderId": "PO-1", "currency": "EUR", "customer": {"code": "c", "name": "n"},
             "lines": [{"sku": "a", "quantity": 1, "unitPrice": 2}]}


def run(spec: Any, data: Any, content_type: str, base_dir: Path = DATA) -> Envelope:
    env = Envelope(source="t", type="t", datacontenttype=content_type, data=data)
    return build_chain([spec], base_dir=base_dir)(env)


def test_xsd_valid_envelope_passes_unchanged() -> None:
    env = Envelope(source="t", type="t", datacontenttype="application/xml", data=GOOD_XML)
    assert build_chain([{"xsd": "schemas/order.xsd"}], base_dir=DATA)(env) is env


def test_xsd_violation_names_line_path_and_rule() -> None:
    bad = ('<order id="1">\n<line sku="a"><qty>2</qty><price>1</price></line>\n'
           '<line sku="b"><qty>many</qty><price>-1</price></line>\n</order>')
    with pytest.raises(TransformError) as info:
        run({"xsd": "schemas/order.xsd"}, bad, "application/xml")
    message = str(info.value)
    assert message.startswith("transformer 'xsd': schema violation: line 3 /order/line[2]/qty")
    assert "'many' is not a valid value of the atomic type 'xs:integer'" in message
    assert "/order/line[2]/price" in message and "minInclusive" in message


def test_xsd_include_outside_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "types.xsd").write_text((DATA / "schemas/types.xsd").read_text())
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "order.xsd").write_text(
        (DATA / "schemas/order.xsd").read_text().replace('"types.xsd"', '"../types.xsd"'))
    with pytest.raises(ConfigError, match="outside the schema's folder"):
        run({"xsd": "schemas/order.xsd"}, GOOD_XML, "application/xml", tmp_path)


def test_json_schema_valid_passes() -> None:
    assert run({"json-schema": "schemas/canonical-order.schema.json"}, GOOD_JSON,
               "application/json").data == GOOD_JSON


def test_json_schema_violation_names_pointer_and_rule() -> None:
    bad = {**GOOD_JSON, "currency": "XXX",
           "lines": [{"sku": "a", "quantity": "2", "unitPrice": 1}]}
    with pytest.raises(TransformError) as info:
        run({"json-schema": "schemas/canonical-order.schema.json"}, bad, "application/json")
    message = str(info.value)
    assert "/currency: 'XXX' is not one of ['EUR', 'USD', 'GBP'] (rule: enum" in message
    assert "/lines/0/quantity: '2' is not of type 'integer' (rule: type at schema " \
           "/properties/lines/items/properties/quantity/type)" in message


def test_json_schema_inline_and_default_draft() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}},
              "dependentRequired": {"n": ["m"]}}  # a 2020-12 keyword
    run({"json-schema": {"schema": schema}}, {"m": 1, "n": 1}, "application/json")
    with pytest.raises(TransformError, match=r"/: 'm' is a dependency of 'n' \(rule: depend"):
        run({"json-schema": {"schema": schema}}, {"n": 1}, "application/json")


def test_invalid_json_schema_fails_at_build_time() -> None:
    with pytest.raises(ConfigError, match="invalid JSON Schema at /type"):
        run({"json-schema": {"schema": {"type": "integr"}}}, 1, "application/json")


def test_validation_steps_refuse_the_wrong_payload_kind() -> None:
    with pytest.raises(TransformError, match="add xml-to-json"):
        run({"json-schema": {"schema": {}}}, "<a/>", "application/xml")
    with pytest.raises(TransformError, match="add json-to-xml"):
        run({"xsd": "schemas/order.xsd"}, {"a": 1}, "application/json")


# -- the sandbox: no files, no network ----------------------------------------------------------

CANARY = "CANARY-5d1e07b2-do-not-leak"


@pytest.fixture
def listener() -> Iterator[Listener]:
    with listening() as seen:
        yield seen


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``tmp_path/schemas`` (the step's folder), next to ``tmp_path/outside.json`` (the canary)."""
    (tmp_path / "outside.json").write_text(
        json.dumps({"type": "integer", "description": CANARY}), encoding="utf-8")
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "sibling.json").write_text(
        json.dumps({"type": "integer", "description": CANARY}), encoding="utf-8")
    return tmp_path / "schemas"


FOREIGN_REFS = {  # label: (schema, the reference that must be refused)
    "file URL": ({"properties": {"a": {"$ref": "{outside}"}}}, "{outside}"),
    "relative path out of the folder": ({"properties": {"a": {"$ref": "../outside.json"}}},
                                        "../outside.json"),
    "sibling file": ({"items": {"$ref": "sibling.json#/type"}}, "sibling.json#/type"),
    "http": ({"$ref": "{url}/s.json"}, "{url}/s.json"),
    "http via $id": ({"$id": "{url}/root.json", "properties": {"a": {"$ref": "other.json"}}},
                     "other.json"),
    "$dynamicRef over http": ({"properties": {"a": {"$dynamicRef": "{url}/d.json#meta"}}},
                              "{url}/d.json#meta"),
    "hidden under an unknown keyword, reached by pointer": (
        {"x-hidden": {"$ref": "{outside}"}, "properties": {"a": {"$ref": "#/x-hidden"}}},
        "{outside}"),
    "draft-07": ({"$schema": "http://json-schema.org/draft-07/schema#",
                  "definitions": {"a": {"$ref": "{url}/7.json"}}}, "{url}/7.json"),
}


def fill(value: Any, **names: str) -> Any:
    text = json.dumps(value)
    for key, replacement in names.items():
        text = text.replace("{" + key + "}", replacement)
    return json.loads(text)


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "file"])
@pytest.mark.parametrize("label", sorted(FOREIGN_REFS))
def test_json_schema_refs_to_other_documents_fail_the_build(
        label: str, inline: bool, folder: Path, listener: Listener) -> None:
    outside = (folder.parent / "outside.json").as_uri()
    schema, ref = fill(FOREIGN_REFS[label], outside=outside, url=listener.url)
    if inline:
        spec: Any = {"json-schema": {"schema": schema}}
    else:
        (folder / "s.json").write_text(json.dumps(schema), encoding="utf-8")
        spec = {"json-schema": "s.json"}
    with pytest.raises(ConfigError) as info:
        build_chain([spec], base_dir=folder)
    message = str(info.value)
    assert message.startswith("transform[0].json-schema: ")
    assert f"{ref!r} at /" in message
    assert "never fetched" in message
    assert CANARY not in message


def test_json_schema_local_refs_keep_working(listener: Listener) -> None:
    schema = {
        "$id": f"{listener.url}/order.json",  # a base URI, never fetched
        "$defs": {
            "sku": {"$anchor": "sku", "type": "string", "minLength": 1},
            "qty": {"$id": "qty.json", "type": "integer", "minimum": 1},
            "meta": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
        },
        "type": "object",
        "properties": {
            "sku": {"$ref": "#sku"},
            "qty": {"$ref": "qty.json"},
            "again": {"$ref": f"{listener.url}/order.json#/$defs/qty"},
            "schema": {"$ref": "#/$defs/meta"},
            "child": {"$ref": "#"},
        },
    }
    step = {"json-schema": {"schema": schema}}
    good = {"sku": "a", "qty": 2, "again": 3, "schema": {"type": "string"},
            "child": {"sku": "b"}}
    assert run(step, good, "application/json").data == good
    with pytest.raises(TransformError) as info:
        run(step, {"sku": "", "qty": 0, "child": {"qty": "x"}, "schema": {"type": 5}},
            "application/json")
    message = str(info.value)
    assert "/sku: '' should be non-empty" in message
    assert "/qty: 0 is less than the minimum of 1" in message
    assert "/child/qty: 'x' is not of type 'integer'" in message
    assert "/schema/type: 5 is not valid under any of the given schemas" in message


def test_json_schema_local_ref_to_nowhere_fails_the_build() -> None:
    with pytest.raises(ConfigError, match=r"\$ref '#/\$defs/missing' at /properties/a: points "
                                          "nowhere in the schema"):
        run({"json-schema": {"schema": {"properties": {"a": {"$ref": "#/$defs/missing"}}}}},
            {}, "application/json")


XSD_LINK = {
    "import": '<xs:import namespace="urn:o" schemaLocation="{loc}"/>',
    "include": '<xs:include schemaLocation="{loc}"/>',
    "redefine": '<xs:redefine schemaLocation="{loc}"/>',
}


@pytest.mark.parametrize("where", ["http", "parent", "absolute", "file-url", "symlink"])
@pytest.mark.parametrize("kind", sorted(XSD_LINK))
def test_xsd_links_out_of_the_folder_are_refused(
        kind: str, where: str, folder: Path, listener: Listener) -> None:
    outside = folder.parent / "outside.xsd"
    target = ' targetNamespace="urn:o"' if kind == "import" else ""
    outside.write_text(f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"{target}>'
                       f'<xs:simpleType name="{CANARY}"><xs:restriction base="xs:string"/>'
                       "</xs:simpleType></xs:schema>", encoding="utf-8")
    (folder / "link.xsd").symlink_to(outside)
    loc = {"http": f"{listener.url}/o.xsd", "parent": "../outside.xsd", "absolute": str(outside),
           "file-url": outside.as_uri(), "symlink": "link.xsd"}[where]
    (folder / "main.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'{XSD_LINK[kind].format(loc=loc)}<xs:element name="r"/></xs:schema>', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        build_chain([{"xsd": "main.xsd"}], base_dir=folder)
    message = str(info.value)
    assert message.startswith("transform[0].xsd: main.xsd: ")
    assert ("outside the schema's folder" in message) or ("URLs are not allowed" in message)
    assert CANARY not in message


def test_xsd_ignores_schema_locations_in_the_payload(listener: Listener) -> None:
    payload = (f'<order id="1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
               f'xsi:noNamespaceSchemaLocation="{listener.url}/n.xsd" '
               f'xsi:schemaLocation="urn:x {listener.url}/x.xsd">'
               '<line sku="a"><qty>2</qty><price>1.5</price></line></order>')
    assert run({"xsd": "schemas/order.xsd"}, payload, "application/xml").data == payload
