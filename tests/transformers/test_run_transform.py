"""run_transform: what ``esb transform NAME|CHAIN FILE`` calls."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from esb.bus.errors import ConfigError
from esb.transformers.cli_support import guess_content_type, run_transform

DATA = Path(__file__).parent / "data"


def test_content_type_guess() -> None:
    assert guess_content_type(Path("a.XML")) == "application/xml"
    assert guess_content_type(Path("a.json")) == "application/json"
    assert guess_content_type(Path("a.csv")) == "text/plain"


def test_entry_point_name() -> None:
    out = run_transform("xml-to-json", DATA / "soap_order.xml", base_dir=DATA)
    assert out.datacontenttype == "application/json"
    assert "soap:Envelope" in out.data
    assert (out.source, out.type, out.subject) == ("cli", "sample", "soap_order.xml")


def test_stylesheet_path(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"canonicalOrder": {"orderId": "PO-9"}}')
    chain = tmp_path / "c.yaml"
    chain.write_text(yaml.safe_dump(["json-to-xml", {"xslt": str(
        DATA / "xslt/canonical-to-partner.xsl")}]))
    out = run_transform(str(chain), tmp_path / "in.json", base_dir=tmp_path, type="order")
    assert 'number="PO-9"' in out.data and out.type == "order"
    xml = tmp_path / "in.xml"
    xml.write_text("<canonicalOrder><orderId>PO-8</orderId></canonicalOrder>")
    out = run_transform("xslt/canonical-to-partner.xsl", xml, base_dir=DATA)
    assert 'number="PO-8"' in out.data


def test_content_type_override(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text('{"a": {"b": 2}}')
    out = run_transform("json-to-xml", tmp_path / "data.txt", base_dir=tmp_path,
                        content_type="application/json")
    assert out.data.endswith("<a><b>2</b></a>")


def test_bad_specs(tmp_path: Path) -> None:
    (tmp_path / "in.xml").write_text("<a/>")
    with pytest.raises(ConfigError, match="Did you mean 'xml-to-json'"):
        run_transform("xml-to-jsn", tmp_path / "in.xml", base_dir=tmp_path)
    (tmp_path / "c.yaml").write_text("xslt: a.xsl\n")
    with pytest.raises(ConfigError, match="a chain file holds a YAML list"):
        run_transform("c.yaml", tmp_path / "in.xml", base_dir=tmp_path)
