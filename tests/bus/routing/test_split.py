"""The splitter alone: JSON arrays by JMESPath, XML nodes by XPath (namespaces kept), FHIR
Bundle entries; ids, sequence extensions and limits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.routing.model import SplitSpec
from esb.bus.routing.split import SplitError, Splitter


def splitter(**spec: Any) -> Splitter:
    return Splitter.compile(SplitSpec.model_validate(spec), {"b": "urn:batch"})


def env(data: Any, content_type: str = "application/json", **kw: Any) -> Envelope:
    return Envelope(id="p1", source="shop", type="batch", datacontenttype=content_type,
                    data=data, **kw)


def test_a_json_array_becomes_parts_with_their_place_in_the_sequence() -> None:
    parts = splitter(jmespath="orders")(env({"orders": [{"n": i} for i in range(12)]},
                                            idempotencykey="k"))
    assert [p.data for p in parts] == [{"n": i} for i in range(12)]
    assert [p.id for p in parts] == [f"p1.{i}" for i in range(1, 13)]
    assert parts[0].idempotencykey == "k.1"
    assert parts[0].extensions == {"sequence": "01", "splitid": "p1", "splitindex": 1,
                                   "splitsize": 12}
    assert parts[11].extensions["sequence"] == "12"
    assert all(p.type == "batch" and p.source == "shop" for p in parts)
    # bytes that are JSON, and the payload itself as the array
    assert [p.data for p in splitter(jmespath="@")(env(b"[1, 2]"))] == [1, 2]


def test_xpath_nodes_keep_every_namespace_in_scope() -> None:
    xml = ('<b:batch xmlns:b="urn:batch" xmlns:o="urn:order" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
           '<o:order xsi:type="o:Big"><o:id>1</o:id></o:order>'
           '<o:order><o:id>2</o:id></o:order></b:batch>')
    parts = splitter(xpath="/b:batch/o:order", namespaces={"o": "urn:order"})(
        env(xml, "application/xml"))
    assert len(parts) == 2 and parts[0].datacontenttype == "application/xml"
    first = etree.fromstring(parts[0].data)
    assert first.tag == "{urn:order}order"
    # the prefix used inside an attribute value still resolves in the part alone
    assert first.nsmap["o"] == "urn:order" and first.nsmap["xsi"].endswith("XMLSchema-instance")
    assert first.findtext("{urn:order}id") == "1"


def test_fhir_bundle_entries() -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "x", "resource": {"resourceType": "Patient", "id": "p7"}},
        {"resource": {"resourceType": "Observation", "id": "o1"}}]}
    parts = splitter(fhir="bundle")(env(orjson.dumps(bundle), "application/fhir+json"))
    assert [p.subject for p in parts] == ["Patient/p7", "Observation/o1"]
    assert parts[1].data == {"resourceType": "Observation", "id": "o1"}
    assert parts[0].datacontenttype == "application/fhir+json"
    with pytest.raises(SplitError, match="not a FHIR Bundle"):
        splitter(fhir="bundle")(env({"resourceType": "Patient"}))


@pytest.mark.parametrize(("spec", "data", "ct", "error"), [
    ({"jmespath": "orders", "max_parts": 3}, {"orders": [1, 2, 3, 4]}, "application/json",
     "4 parts, more than max_parts \\(3\\)"),
    ({"jmespath": "orders"}, {"orders": {"a": 1}}, "application/json", "selected dict"),
    ({"jmespath": "orders"}, {"orders": []}, "application/json", "found no parts"),
    ({"jmespath": "orders"}, b"{not json", "application/json", "not valid JSON"),
    ({"jmespath": "orders"}, "<a/>", "application/xml", "needs a JSON payload"),
    ({"xpath": "//b:x"}, "<a", "application/xml", "not well-formed"),
    ({"xpath": "count(//a)"}, "<a/>", "application/xml", "element nodes"),
])
def test_what_cannot_be_split_is_a_split_error(spec: dict[str, Any], data: Any, ct: str,
                                               error: str) -> None:
    with pytest.raises(SplitError, match=error):
        splitter(**spec)(env(data, ct))


def test_the_spec_names_one_way_to_split() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        SplitSpec.model_validate({"jmespath": "a", "xpath": "//b"})
    with pytest.raises(ValueError, match="exactly one of"):
        SplitSpec.model_validate({})
    with pytest.raises(ValueError, match=r"split\.jmespath"):
        splitter(jmespath="orders[")
