"""The ``xslt`` transformer's options: parameters, output types, payload kinds, XSLT 2.0/3.0."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.transformers.chain import build_chain

XSL = 'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'


def write(folder: Path, body: str, version: str = "1.0", name: str = "s.xsl") -> str:
    (folder / name).write_text(f'<xsl:stylesheet version="{version}" {XSL}>{body}'
                               "</xsl:stylesheet>")
    return name


def run(folder: Path, spec: Any, env: Envelope | None = None) -> Envelope:
    env = env or Envelope(source="urn:src", type="order.placed", datacontenttype="text/xml",
                          data="<r>x</r>", correlationid="c-1")
    return build_chain([{"xslt": spec}], base_dir=folder)(env)


ECHO_PARAMS = """<xsl:output method="text"/>
  <xsl:param name="type"/><xsl:param name="source"/><xsl:param name="correlationid"/>
  <xsl:param name="subject" select="'none'"/><xsl:param name="n"/><xsl:param name="flag"/>
  <xsl:template match="/"><xsl:value-of
    select="concat($type,'|',$source,'|',$correlationid,'|',$subject,'|',$n + 1,'|',$flag)"/>
  </xsl:template>"""


def test_params_from_envelope_and_static(tmp_path: Path) -> None:
    name = write(tmp_path, ECHO_PARAMS)
    out = run(tmp_path, {"stylesheet": name, "params": {"n": 41, "flag": True,
                                                        "source": "static"}})
    assert out.data == "order.placed|static|c-1|none|42|true"
    assert out.datacontenttype == "text/plain"


def test_envelope_params_are_quoted_safely(tmp_path: Path) -> None:
    name = write(tmp_path, ECHO_PARAMS)
    env = Envelope(source="s", type="it's \"quoted\"') or ('", subject="<b>&amp;",
                   datacontenttype="application/xml", data="<r/>")
    assert run(tmp_path, name, env).data.startswith("it's \"quoted\"') or ('|s||<b>&amp;|")


def test_undeclared_static_param_is_a_config_error(tmp_path: Path) -> None:
    name = write(tmp_path, ECHO_PARAMS)
    with pytest.raises(ConfigError, match=r"params \['nn'\] are not declared"):
        run(tmp_path, {"stylesheet": name, "params": {"nn": 1}})


@pytest.mark.parametrize(("output", "override", "expected"), [
    ("", None, "application/xml"),
    ('<xsl:output method="xml"/>', None, "application/xml"),
    ('<xsl:output method="html"/>', None, "text/html"),
    ('<xsl:output method="text"/>', None, "text/plain"),
    ('<xsl:output method="xml" media-type="application/soap+xml"/>', None,
     "application/soap+xml"),
    ('<xsl:output method="text"/>', "text/csv", "text/csv"),
])
def test_output_content_type(tmp_path: Path, output: str, override: str | None,
                             expected: str) -> None:
    name = write(tmp_path, output + '<xsl:template match="/"><o>1</o></xsl:template>')
    out = run(tmp_path, {"stylesheet": name, "content_type": override})
    assert out.datacontenttype == expected
    assert isinstance(out.data, str)


def test_json_output_is_parsed(tmp_path: Path) -> None:
    name = write(tmp_path, '<xsl:output method="text"/><xsl:template match="/">'
                           '{"v": "<xsl:value-of select="r"/>"}</xsl:template>')
    out = run(tmp_path, {"stylesheet": name, "content_type": "application/json"})
    assert out.data == {"v": "x"}


def test_json_payload_is_refused_with_a_hint(tmp_path: Path) -> None:
    name = write(tmp_path, '<xsl:template match="/"><o/></xsl:template>')
    env = Envelope(source="s", type="t", data={"a": 1})
    with pytest.raises(TransformError, match="xslt needs an XML payload; add json-to-xml"):
        run(tmp_path, name, env)


def test_bytes_payload_and_terminating_message(tmp_path: Path) -> None:
    name = write(tmp_path, '<xsl:template match="/"><xsl:if test="r = \'stop\'">'
                           '<xsl:message terminate="yes">stopped</xsl:message></xsl:if>'
                           "<o><xsl:value-of select='r'/></o></xsl:template>")
    env = Envelope(source="s", type="t", datacontenttype="application/xml",
                   data=b"<r>ok</r>")
    assert run(tmp_path, name, env).data.endswith("<o>ok</o>\n")
    with pytest.raises(TransformError, match="stylesheet failed"):
        run(tmp_path, name, env.model_copy(update={"data": "<r>stop</r>"}))


def test_xslt2_without_saxon_names_the_extra(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_saxon(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "saxonche":
            raise ImportError("No module named 'saxonche'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_saxon)
    name = write(tmp_path, '<xsl:template match="/"><o/></xsl:template>', version="2.0")
    with pytest.raises(ConfigError, match=r"version 2: XSLT 2.0/3.0 needs the optional extra"):
        run(tmp_path, name)


def test_xslt3_runs_on_saxon_in_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("SECRET")
    name = write(tmp_path, """<xsl:param name="type"/><xsl:param name="n" select="0"/>
      <xsl:template match="/"><o t="{$type}" n="{$n * 2}">
        <xsl:value-of select="string-join(for $i in 1 to 3 return string($i), ',')"/></o>
      </xsl:template>""", version="3.0")
    out = run(tmp_path, {"stylesheet": name, "params": {"n": 21}})
    assert out.data.endswith('<o t="order.placed" n="42">1,2,3</o>')
    reader = write(tmp_path, """<xsl:template match="/"><o>
      <xsl:value-of select="unparsed-text('secret.txt')"/></o></xsl:template>""",
                   version="3.0", name="reader.xsl")
    with pytest.raises(TransformError) as info:
        run(tmp_path, reader)
    assert "SECRET" not in str(info.value)
    writer = write(tmp_path, f"""<xsl:template match="/"><xsl:result-document
      href="{(tmp_path / 'w.xml').as_uri()}"><w/></xsl:result-document></xsl:template>""",
                   version="3.0", name="writer.xsl")
    with pytest.raises(ConfigError, match="xsl:result-document is not allowed"):
        run(tmp_path, writer)
    assert not (tmp_path / "w.xml").exists()


EXTENSION_PARAMS = """<xsl:output method="text"/>
  <xsl:param name="type"/><xsl:param name="partner"/><xsl:param name="tenant"/>
  <xsl:param name="flag"/><xsl:param name="retries"/><xsl:param name="blob" select="'none'"/>
  <xsl:param name="absent" select="'default'"/>
  <xsl:template match="/"><xsl:value-of select="concat($type, '|', $partner, '|', $tenant, '|',
    $flag, '|', $retries, '|', $blob, '|', $absent)"/></xsl:template>"""


@pytest.mark.parametrize("version", ["1.0", "3.0"])
def test_params_from_extension_attributes(tmp_path: Path, version: str) -> None:
    """Declared params are filled from extensions too; route options win, then the envelope,
    then the param's default (``blob``: no extension of that name)."""
    name = write(tmp_path, EXTENSION_PARAMS, version=version)
    chain = build_chain([{"xslt": {"stylesheet": name, "params": {"tenant": "from-route"}}}],
                        base_dir=tmp_path)
    env = Envelope(source="s", type="order.placed", datacontenttype="application/xml",
                   data="<r/>", extensions={"partner": "ACME", "tenant": "from-envelope",
                                            "flag": True, "retries": 3})
    bare = env.model_copy(update={"extensions": {}})
    # The same compiled step, in turn: a value from one envelope never sticks to the next.
    for _ in range(2):
        assert chain(env).data == "order.placed|ACME|from-route|true|3|none|default"
        assert chain(bare).data == "order.placed||from-route|||none|default"


LATIN1 = """<xsl:output method="{method}" encoding="ISO-8859-1"/>
  <xsl:template match="/"><o>caf\u00e9 <xsl:value-of select="r"/></o></xsl:template>"""


@pytest.mark.parametrize("version", ["1.0", "3.0"])
@pytest.mark.parametrize("method", ["xml", "text"])
def test_declared_encoding_is_kept(tmp_path: Path, version: str, method: str) -> None:
    name = write(tmp_path, LATIN1.format(method=method), version=version)
    env = Envelope(source="s", type="t", datacontenttype="application/xml",
                   data="<r>na\u00efve</r>")
    out = run(tmp_path, name, env)
    media = "application/xml" if method == "xml" else "text/plain"
    assert out.datacontenttype == f"{media}; charset=ISO-8859-1"
    assert isinstance(out.data, bytes)
    expected = "caf\u00e9 na\u00efve".encode("iso-8859-1")
    if method == "xml":
        assert out.data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
        assert out.data.rstrip().endswith(b"<o>" + expected + b"</o>")
    else:
        assert out.data == expected


@pytest.mark.parametrize("version", ["1.0", "3.0"])
def test_character_outside_the_encoding_becomes_a_reference(tmp_path: Path,
                                                            version: str) -> None:
    name = write(tmp_path, LATIN1.format(method="xml"), version=version)
    env = Envelope(source="s", type="t", datacontenttype="application/xml",
                   data="<r>\u20ac5</r>")
    out = run(tmp_path, {"stylesheet": name, "content_type": "application/xml; charset=utf-8"},
              env)
    assert out.datacontenttype == "application/xml; charset=ISO-8859-1"
    assert b"caf\xe9 &#" in out.data and out.data.rstrip().endswith(b";5</o>")
    assert etree.fromstring(out.data).text == "caf\u00e9 \u20ac5"


def test_unknown_encoding_fails_the_load(tmp_path: Path) -> None:
    name = write(tmp_path, '<xsl:output encoding="x-no-such"/>'
                           '<xsl:template match="/"><o/></xsl:template>')
    with pytest.raises(ConfigError, match="xsl:output encoding 'x-no-such' is not a known"):
        run(tmp_path, name)


@pytest.mark.parametrize("version", ["1.0", "3.0"])
def test_utf8_and_json_results_stay_text(tmp_path: Path, version: str) -> None:
    utf8 = write(tmp_path, '<xsl:output encoding="utf-8"/><xsl:template match="/">'
                           "<o>\u20ac</o></xsl:template>", version=version)
    assert run(tmp_path, utf8).data.endswith("<o>\u20ac</o>" + ("\n" if version == "1.0"
                                                                     else ""))
    as_json = write(tmp_path, '<xsl:output method="text" encoding="ISO-8859-1"/>'
                              '<xsl:template match="/">{"v": "caf\u00e9"}</xsl:template>',
                    version=version, name="j.xsl")
    out = run(tmp_path, {"stylesheet": as_json, "content_type": "application/json"})
    assert (out.data, out.datacontenttype) == ({"v": "caf\u00e9"}, "application/json")
