"""The ``jmespath`` transformer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, DropEnvelope, TransformError
from esb.transformers.chain import build_chain


def run(spec: Any, data: Any, content_type: str = "application/json") -> Envelope:
    env = Envelope(source="t", type="t", datacontenttype=content_type, data=data)
    return build_chain([spec], base_dir=Path("."))(env)


def test_projection_replaces_data() -> None:
    data = {"order": {"id": "1", "lines": [{"sku": "a", "q": 2}, {"sku": "b", "q": 0}]}}
    out = run({"jmespath": "order.{id: id, skus: lines[?q > `0`].sku}"}, data)
    assert (out.data, out.datacontenttype) == ({"id": "1", "skus": ["a"]}, "application/json")


def test_bytes_json_payload_is_parsed() -> None:
    assert run({"jmespath": "a"}, b'{"a": [1]}').data == [1]


def test_null_result_options() -> None:
    assert run({"jmespath": "missing"}, {"a": 1}).data is None
    with pytest.raises(DropEnvelope):
        run({"jmespath": {"expression": "missing", "on_null": "drop"}}, {"a": 1})
    with pytest.raises(TransformError, match="matched nothing"):
        run({"jmespath": {"expression": "missing", "on_null": "error"}}, {"a": 1})


def test_xml_payload_is_refused_with_a_hint() -> None:
    with pytest.raises(TransformError, match=r"needs a JSON payload.*add xml-to-json"):
        run({"jmespath": "a"}, "<a/>", "application/xml")


def test_bad_expression_fails_at_build_time() -> None:
    with pytest.raises(ConfigError, match=r"transform\[0\]\.jmespath: expression does not"):
        run({"jmespath": "a.[?"}, {})
