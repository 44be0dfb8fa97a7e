"""The ``xsd`` and ``json-schema`` transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
