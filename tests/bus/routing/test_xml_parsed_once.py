"""An XML payload is parsed once per message on its way in: the inbound edge's check, XPath
routing and a transform step read one tree (``parse_xml(..., shared=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from esb.adapters.rest.inbound import _decode
from esb.bus import xmlsafe
from esb.bus.envelope import Envelope
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.bus.xmlsafe import DEFAULT_LIMITS
from esb.transformers.chain import build_chain

ROUTES = """
namespaces: {o: "urn:o"}
routes:
  - name: big-orders
    from: [in]
    match: {"$xpath": {"/o:order/o:total": [{numeric: [">=", 100]}]}}
    to: [{destination: sink}]
"""


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = etree.fromstring

    def counting(text: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(xmlsafe.etree, "fromstring", counting)
    return seen


def test_edge_routing_and_step_share_one_parse(tmp_path: Path, parses: list[bytes]) -> None:
    body = b"<o:order xmlns:o='urn:o'><o:sku>A-1</o:sku><o:total>250</o:total></o:order>"
    data = _decode("application/xml", "application/xml", body, DEFAULT_LIMITS, 64)
    env = Envelope(source="shop", type="order", datacontenttype="application/xml", data=data,
                   esbendpoint="in")
    router = compile_routes(parse_route_files({"r.yaml": ROUTES}, base=tmp_path),
                            sources={"in"}, destinations={"sink"}, base_dir=tmp_path)
    assert [r.name for r in router.match(env)] == ["big-orders"]
    out = build_chain(["xml-to-json"], base_dir=tmp_path)(env)
    assert out.data["o:order"]["o:total"] == "250"
    assert len(parses) == 1


def test_a_changed_payload_is_parsed_again(tmp_path: Path, parses: list[bytes]) -> None:
    data = _decode("application/xml", "application/xml", b"<a><b>1</b></a>", DEFAULT_LIMITS,
                   64)
    env = Envelope(source="s", type="t", datacontenttype="application/xml",
                   data=data.replace("1", "2"))
    out = build_chain(["xml-to-json"], base_dir=tmp_path)(env)
    assert out.data == {"a": {"b": "2"}} and len(parses) == 2
