"""``isolation: inline``: the stylesheet runs in the daemon, on the tree parsed from the payload
already, with the same results and errors as in the sandbox process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from esb.bus import xmlsafe
from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError
from esb.bus.xmlsafe import parse_xml
from esb.transformers.chain import build_chain

XSL = 'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'
SHEET = f"""<xsl:stylesheet version="1.0" {XSL}>
  <xsl:param name="type"/><xsl:param name="n"/>
  <xsl:template match="/order">
    <sale kind="{{$type}}" n="{{$n + 1}}"><xsl:copy-of select="line"/></sale>
  </xsl:template>
</xsl:stylesheet>"""
ORDER = "<order><line sku='a'>1</line><line sku='b'>2</line></order>"


@pytest.fixture
def sheet(tmp_path: Path) -> Path:
    (tmp_path / "s.xsl").write_text(SHEET)
    return tmp_path


def chain(folder: Path, isolation: str, **options: Any) -> Callable[[Envelope], Envelope]:
    step = {"xslt": {"stylesheet": "s.xsl", "params": {"n": 41}, "isolation": isolation,
                     **options}}
    return build_chain([step], base_dir=folder)


def order(data: Any) -> Envelope:
    return Envelope(source="urn:src", type="order.placed", datacontenttype="application/xml",
                    data=data)


def run(folder: Path, isolation: str, data: Any, **options: Any) -> Envelope:
    return chain(folder, isolation, **options)(order(data))


@pytest.mark.parametrize("data", [ORDER, ORDER.encode()], ids=["text", "bytes"])
def test_inline_gives_what_the_sandbox_gives(sheet: Path, data: str | bytes) -> None:
    inline, process = run(sheet, "inline", data), run(sheet, "process", data)
    assert inline.data == process.data
    assert inline.datacontenttype == process.datacontenttype
    out = etree.fromstring(inline.data.encode())
    assert (out.get("kind"), out.get("n"), [e.get("sku") for e in out]) == \
        ("order.placed", "42", ["a", "b"])


@pytest.mark.parametrize(("data", "options"), [
    ("<order><line>", {}),                      # not well-formed
    ("<order>" + "<a>" * 40 + "</a>" * 40 + "</order>", {"max_depth": 10}),
    (ORDER, {"max_bytes": 10}),
], ids=["malformed", "too-deep", "too-large"])
def test_refused_input_is_the_same_error_in_both(sheet: Path, data: str,
                                                 options: dict[str, Any]) -> None:
    errors = []
    for isolation in ("inline", "process"):
        with pytest.raises(TransformError) as caught:
            run(sheet, isolation, data, **options)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert "input refused" in errors[0]


def test_inline_reads_the_tree_the_edge_parsed(sheet: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = "".join(["<order>", ORDER[7:]])  # one str object, as the edge hands it on
    step = chain(sheet, "inline")
    tree = parse_xml(data, shared=True)  # the inbound edge's well-formedness check
    before = etree.tostring(tree)
    parses: list[int] = []
    real = xmlsafe.etree.fromstring
    monkeypatch.setattr(xmlsafe.etree, "fromstring",
                        lambda *a, **k: parses.append(1) or real(*a, **k))
    out = step(order(data))
    assert parses == []
    again = step(order(data + " "))  # another payload: parsed, as before
    assert parses == [1]
    assert etree.tostring(tree) == before  # read, not changed
    assert again.data == out.data
    assert etree.fromstring(out.data.encode()).get("n") == "42"


STRIPS = f"""<xsl:stylesheet version="1.0" {XSL}>
  <xsl:include href="space.xsl"/>
  <xsl:template match="/"><n><xsl:value-of select="count(//text())"/></n></xsl:template>
</xsl:stylesheet>"""
SPACE = f'<xsl:stylesheet version="1.0" {XSL}><xsl:strip-space elements="*"/></xsl:stylesheet>'
COUNTS = f"""<xsl:stylesheet version="1.0" {XSL}>
  <xsl:template match="/"><n><xsl:value-of select="count(//text())"/></n></xsl:template>
</xsl:stylesheet>"""


def test_a_stylesheet_that_strips_space_gets_a_tree_of_its_own(tmp_path: Path) -> None:
    """libxslt applies xsl:strip-space (here from an included module) to the input tree in
    place: the shared tree stays as parsed for the steps and destinations after it."""
    for name, text in (("strips.xsl", STRIPS), ("space.xsl", SPACE), ("counts.xsl", COUNTS)):
        (tmp_path / name).write_text(text)

    def step(name: str) -> Callable[[Envelope], Envelope]:
        return build_chain([{"xslt": {"stylesheet": name, "isolation": "inline"}}],
                           base_dir=tmp_path)

    strips, counts = step("strips.xsl"), step("counts.xsl")
    data = "".join(["<order>\n  <note> </note>\n", "<line>1</line>\n</order>"])
    tree = parse_xml(data, shared=True)
    before = etree.tostring(tree)
    assert "<n>5</n>" in counts(order(data)).data
    assert "<n>1</n>" in strips(order(data)).data  # only the line's text is left to it
    assert etree.tostring(tree) == before
    assert "<n>5</n>" in counts(order(data)).data  # the next destination sees it all
