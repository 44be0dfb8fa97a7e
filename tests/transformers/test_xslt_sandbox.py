"""Hostile payloads and stylesheets: each refused with a clear error, and no effect.

A canary file's content must never show up in any output or error, and a local TCP listener
must never see a connection. XSLT 1.0 runs on libxslt; 2.0/3.0 on Saxon, whose sandbox is
tested at compile time and at run time (saxonche is part of the test extra: never skipped).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from esbtest.listener import Listener, listening
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.transformers.chain import build_chain
from esb.transformers.sandbox import KEPT_REFUSALS
from esb.transformers.spec import TransformerContext
from esb.transformers.xslt import (
    MAX_TEMPLATE_DEPTH,
    XsltSettings,
    XsltTransformer,
    compile_xslt,
)

CANARY = "CANARY-7f3a9c1e-do-not-leak"
XSL_OPEN = ('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" '
            'xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl">')
IDENTITY = XSL_OPEN + """
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/>
  </xsl:copy></xsl:template>
</xsl:stylesheet>"""


@pytest.fixture
def listener() -> Iterator[Listener]:
    with listening() as seen:
        yield seen


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary.xml"
    path.write_text(f"<secret>{CANARY}</secret>", encoding="utf-8")
    return path


@pytest.fixture
def sheets(tmp_path: Path) -> Path:
    folder = tmp_path / "sheets"
    (folder / "data").mkdir(parents=True)
    (folder / "identity.xsl").write_text(IDENTITY, encoding="utf-8")
    return folder


def xml_env(data: str | bytes) -> Envelope:
    return Envelope(source="test", type="t", datacontenttype="application/xml", data=data)


def assert_clean(text: str) -> None:
    assert CANARY not in text


# -- hostile payloads, through every step that parses XML ----------------------------------

def hostile_payloads(canary: Path, listener: Listener) -> dict[str, tuple[str | bytes, str]]:
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    return {
        "external entity (file)": (
            f'<!DOCTYPE r [<!ENTITY x SYSTEM "{canary.as_uri()}">]><r>&x;</r>', "DOCTYPE"),
        "external entity (http)": (
            f'<!DOCTYPE r [<!ENTITY x SYSTEM "{listener.url}/x">]><r>&x;</r>', "DOCTYPE"),
        "parameter entity (http)": (
            f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{listener.url}/p.dtd"> %p;]><r/>', "DOCTYPE"),
        "billion laughs": (
            f'<!DOCTYPE r [<!ENTITY l0 "ha">{laughs}]><r>&l9;</r>', "DOCTYPE"),
        "external DTD": (f'<!DOCTYPE r SYSTEM "{listener.url}/evil.dtd"><r/>', "DOCTYPE"),
        "external DTD (file)": (f'<!DOCTYPE r SYSTEM "{canary.as_uri()}"><r/>', "DOCTYPE"),
        "50 MB body": (b"<r>" + b"x" * (50 * 1024 * 1024) + b"</r>", "larger than"),
        "nesting 10,000 deep": ("<a>" * 10_000 + "</a>" * 10_000, "nesting deeper"),
    }


STEP_KINDS: dict[str, Callable[[Path], list]] = {
    "xslt": lambda sheets: [{"xslt": str(sheets / "identity.xsl")}],
    "xml-to-json": lambda sheets: ["xml-to-json"],
    "xsd": lambda sheets: [{"xsd": str(shutil.copytree(
        Path(__file__).parent / "data/schemas", sheets / "schemas") / "order.xsd")}],
}


@pytest.mark.parametrize("kind", sorted(STEP_KINDS))
def test_hostile_payloads_are_refused(kind: str, sheets: Path, canary: Path,
                                      listener: Listener) -> None:
    chain = build_chain(STEP_KINDS[kind](sheets), base_dir=sheets)
    for label, (payload, expected) in hostile_payloads(canary, listener).items():
        with pytest.raises(TransformError) as info:
            chain(xml_env(payload))
        message = str(info.value)
        assert expected in message, (label, message)
        assert "input refused" in message, label
        assert_clean(message)


# -- hostile stylesheets --------------------------------------------------------------------

def sheet(folder: Path, name: str, body: str) -> str:
    (folder / name).write_text(f"{XSL_OPEN}{body}</xsl:stylesheet>", encoding="utf-8")
    return str(folder / name)


def doc_sheet(folder: Path, href: str) -> str:
    return sheet(folder, "doc.xsl", f"""<xsl:template match="/">
      <out><xsl:copy-of select="document('{href}')"/></out></xsl:template>""")


def run(path: str, folder: Path, data: str = "<r/>") -> Envelope:
    return build_chain([{"xslt": path}], base_dir=folder)(xml_env(data))


@pytest.mark.parametrize("href", ["canary", "canary-relative", "http", "https", "symlink"])
def test_document_outside_the_folder_is_refused_at_run_time(
        href: str, sheets: Path, canary: Path, listener: Listener) -> None:
    link = sheets / "data" / "link.xml"
    link.symlink_to(canary)
    url = {"canary": canary.as_uri(), "canary-relative": "../canary.xml",
           "http": f"{listener.url}/doc.xml", "https": "https://127.0.0.1:1/doc.xml",
           "symlink": "data/link.xml"}[href]
    with pytest.raises(TransformError) as info:
        run(doc_sheet(sheets, url), sheets)
    message = str(info.value)
    assert "sandbox refused" in message
    assert any(why in message for why in ("outside the stylesheet's folder", "not allowed",
                                          "rights"))
    assert_clean(message)


def test_document_in_own_folder_works(sheets: Path) -> None:
    (sheets / "data" / "rates.xml").write_text("<rates><eur>1.08</eur></rates>")
    out = run(doc_sheet(sheets, "data/rates.xml"), sheets)
    assert out.data.endswith("<out><rates><eur>1.08</eur></rates></out>\n")


def test_run_time_refusals_stay_bounded(sheets: Path, canary: Path) -> None:
    """A daemon's stylesheet answers document() for every message: refusing hostile reads
    must not grow anything."""
    path = sheet(sheets, "doc.xsl", """<xsl:template match="/">
      <out><xsl:copy-of select="document(r/@href)"/></out></xsl:template>""")
    step = compile_xslt(XsltSettings(stylesheet=path), TransformerContext("xslt", sheets))
    assert isinstance(step, XsltTransformer)
    for i in range(1000):
        with pytest.raises(TransformError) as info:
            step(xml_env(f'<r href="{canary.as_uri()}?{i}"/>'))
        assert "sandbox refused" in str(info.value)
        assert "outside the stylesheet's folder" in str(info.value)
    assert_clean(str(info.value))
    assert f"{canary.as_uri()}?999: outside" in str(info.value)
    # the refusals happen in the sandbox process; this process's resolver keeps none
    assert len(step.sheet.resolver.refused) <= KEPT_REFUSALS


@pytest.mark.parametrize("kind", ["include", "import"])
def test_include_of_a_sibling_works(kind: str, sheets: Path) -> None:
    sheet(sheets, "lib.xsl", '<xsl:template name="hello"><hi/></xsl:template>')
    path = sheet(sheets, "main.xsl", f"""<xsl:{kind} href="lib.xsl"/>
      <xsl:template match="/"><xsl:call-template name="hello"/></xsl:template>""")
    assert run(path, sheets).data.endswith("<hi/>\n")


@pytest.mark.parametrize("href", ["http", "parent", "absolute", "file-url"])
@pytest.mark.parametrize("kind", ["include", "import"])
def test_include_outside_the_folder_is_refused_at_build_time(
        kind: str, href: str, sheets: Path, tmp_path: Path, canary: Path,
        listener: Listener) -> None:
    outside = tmp_path / "x.xsl"
    outside.write_text(f'{XSL_OPEN}<xsl:template name="t">{CANARY}</xsl:template>'
                       "</xsl:stylesheet>")
    url = {"http": f"{listener.url}/x.xsl", "parent": "../x.xsl", "absolute": str(outside),
           "file-url": outside.as_uri()}[href]
    path = sheet(sheets, "main.xsl", f'<xsl:{kind} href="{url}"/>')
    with pytest.raises(ConfigError) as info:
        build_chain([{"xslt": path}], base_dir=sheets)
    message = str(info.value)
    assert message.startswith("transform[0].xslt: ")
    assert f"xsl:{kind}" in message
    assert ("outside the stylesheet's folder" in message) or ("not allowed" in message)
    assert_clean(message)


def test_stylesheet_with_doctype_is_refused(sheets: Path, canary: Path) -> None:
    path = sheets / "ent.xsl"
    path.write_text(f'<!DOCTYPE xsl:stylesheet [<!ENTITY x SYSTEM "{canary.as_uri()}">]>'
                    f'{XSL_OPEN}<xsl:template match="/"><o>&x;</o></xsl:template>'
                    "</xsl:stylesheet>")
    with pytest.raises(ConfigError, match="DOCTYPE") as info:
        build_chain([{"xslt": str(path)}], base_dir=sheets)
    assert_clean(str(info.value))


def test_exslt_document_cannot_write_files(sheets: Path, tmp_path: Path) -> None:
    target = tmp_path / "written.xml"
    path = sheet(sheets, "write.xsl", f"""<xsl:template match="/">
      <exsl:document href="{target.as_uri()}"><pwned/></exsl:document><o/></xsl:template>""")
    with pytest.raises(TransformError, match="sandbox refused"):
        run(path, sheets)
    assert not target.exists()


# -- XSLT 1.0 (libxslt): extensions beyond EXSLT ----------------------------------------------

NON_EXSLT = {  # label: (namespace declarations, template body)
    "saxon:evaluate (file)": (
        'xmlns:saxon="http://icl.com/saxon"',
        """<o><xsl:copy-of select="saxon:evaluate(&quot;document('{canary}')&quot;)"/></o>"""),
    "saxon:eval (http)": (
        'xmlns:saxon="http://icl.com/saxon"',
        """<o><xsl:copy-of
             select="saxon:eval(saxon:expression(&quot;document('{url}/x')&quot;))"/></o>"""),
    "saxon:line-number": ('xmlns:saxon="http://icl.com/saxon"',
                          '<o><xsl:value-of select="saxon:line-number()"/></o>'),
    "libxslt:node-set": ('xmlns:libxslt="http://xmlsoft.org/XSLT/namespace"',
                         '<o><xsl:value-of select="count(libxslt:node-set(/))"/></o>'),
    "xt:node-set": ('xmlns:xt="http://www.jclark.com/xt"',
                    '<o><xsl:value-of select="count(xt:node-set (/))"/></o>'),
    "libxslt:debug": ('xmlns:libxslt="http://xmlsoft.org/XSLT/namespace" '
                      'extension-element-prefixes="libxslt"', "<o><libxslt:debug/></o>"),
    "saxon:output": ('xmlns:saxon="http://icl.com/saxon" extension-element-prefixes="saxon"',
                     '<saxon:output href="{written}"><w/></saxon:output>'),
    "redirect:write": ('xmlns:redirect="org.apache.xalan.xslt.extensions.Redirect" '
                       'extension-element-prefixes="redirect"',
                       '<redirect:write file="{written}"><w/></redirect:write>'),
    "saxon: reached by dyn:evaluate of a computed string": (
        'xmlns:dyn="http://exslt.org/dynamic" xmlns:saxon="http://icl.com/saxon"',
        """<o><xsl:value-of select="dyn:evaluate(concat('saxon', ':line-number()'))"/></o>"""),
    "xt:document (on a literal result element)": (
        'xmlns:xt="http://www.jclark.com/xt"',
        '<o xsl:extension-element-prefixes="xt"><xt:document href="{written}"><w/>'
        "</xt:document></o>"),
}


def v1_sheet(folder: Path, name: str, namespaces: str, body: str) -> Path:
    path = folder / name
    path.write_text('<xsl:stylesheet version="1.0" '
                    f'xmlns:xsl="http://www.w3.org/1999/XSL/Transform" {namespaces}>\n'
                    f'<xsl:template match="/">{body}</xsl:template>\n</xsl:stylesheet>',
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("label", sorted(NON_EXSLT))
def test_extensions_beyond_exslt_are_refused_at_build_time(
        label: str, sheets: Path, tmp_path: Path, canary: Path, listener: Listener) -> None:
    written = tmp_path / "written.xml"
    namespaces, body = NON_EXSLT[label]
    body = body.format(canary=canary.as_uri(), url=listener.url, written=written.as_uri())
    path = v1_sheet(sheets, "ext.xsl", namespaces, body)
    with pytest.raises(ConfigError) as info:
        run(str(path), sheets)
    message = str(info.value)
    namespace = re.findall(r'xmlns:\w+="([^"]+)"', namespaces)[-1]
    assert f"ext.xsl line 1: namespace {namespace} (prefix " in message, message
    assert "holds libxslt extensions beyond EXSLT and may not be declared" in message
    assert_clean(message)
    assert not written.exists()


@pytest.mark.parametrize("how", ["function", "element"])
def test_any_namespace_beyond_exslt_is_refused(how: str, sheets: Path, tmp_path: Path) -> None:
    """Not only libxslt's own extras: any extension code in the process is out of reach."""
    uri = "urn:esb-test:extensions"
    written = tmp_path / "written.xml"
    functions = etree.FunctionNamespace(uri)
    functions["leak"] = lambda context: CANARY
    body = ('<o><xsl:value-of select="t:leak()"/></o>' if how == "function" else
            f'<o xsl:extension-element-prefixes="t"><t:write href="{written}"/></o>')
    try:
        path = v1_sheet(sheets, "ext.xsl", f'xmlns:t="{uri}"', body)
        with pytest.raises(ConfigError) as info:
            run(str(path), sheets)
    finally:
        del functions["leak"]
    message = str(info.value)
    kind = "function t:leak()" if how == "function" else "element prefix 't'"
    assert f"ext.xsl line 2: extension {kind} " in message
    assert f"namespace {uri}" in message and "(only EXSLT extensions are)" in message
    assert_clean(message)


DYNAMIC = {  # label: (select expression, what the error names)
    "dyn:evaluate of a computed name": ("dyn:evaluate(concat('t', ':leak()'))",
                                        "dyn:evaluate() must be given the expression"),
    "dyn:evaluate of a variable": ("dyn:evaluate($expr)",
                                   "dyn:evaluate() must be given the expression"),
    "dyn:map of a computed name": ("dyn:map(/, concat('t', ':leak()'))",
                                   "dyn:map() must be given the expression"),
    "dyn:evaluate under another prefix": ("d:evaluate (concat('t', ':leak()'))",
                                          "d:evaluate() must be given the expression"),
    "a computed call inside a literal": (
        "dyn:evaluate(&quot;dyn:evaluate(concat('t', ':leak()'))&quot;)",
        "dyn:evaluate() must be given the expression"),
    "a literal calling the registered function": (
        "dyn:evaluate('t:leak()')", "extension function t:leak() in namespace "),
    "dyn:evaluate right after a minus": ("0 -dyn:evaluate($expr)",
                                         "dyn:evaluate() must be given the expression"),
    "a registered function right after a minus": (
        "1-t:leak()", "extension function t:leak() in namespace "),
}


@pytest.mark.parametrize("label", sorted(DYNAMIC))
def test_dynamic_evaluation_cannot_reach_registered_functions(label: str, sheets: Path) -> None:
    """dyn:evaluate resolves the stylesheet's prefixes at run time: a computed expression
    could call any function registered in the process, whatever the stylesheet declares."""
    uri = "urn:esb-test:extensions"
    functions = etree.FunctionNamespace(uri)
    functions["leak"] = lambda context: CANARY
    select, expected = DYNAMIC[label]
    body = ('<xsl:variable name="expr" select="concat(\'t\', \':leak()\')"/>'
            f'<o><xsl:value-of select="{select}"/></o>')
    try:
        path = v1_sheet(sheets, "dyn.xsl", f'xmlns:t="{uri}" xmlns:dyn="http://exslt.org/dynamic" '
                        'xmlns:d="http://exslt.org/dynamic"', body)
        with pytest.raises(ConfigError) as info:
            run(str(path), sheets)
    finally:
        del functions["leak"]
    message = str(info.value)
    assert f"dyn.xsl line 2: {expected}" in message, message
    assert_clean(message)


def test_extension_in_an_included_module_is_named_by_file_and_line(sheets: Path) -> None:
    (sheets / "lib").mkdir()
    v1_sheet(sheets / "lib", "x.xsl", 'xmlns:saxon="http://icl.com/saxon"',
             '<o><xsl:value-of select="saxon:systemId()"/></o>')
    path = sheet(sheets, "main.xsl", '<xsl:include href="lib/x.xsl"/>')
    with pytest.raises(ConfigError, match=r"lib/x\.xsl line 1: namespace http://icl\.com/saxon "
                                          r"\(prefix 'saxon'\) holds libxslt extensions"):
        run(path, sheets)


def test_exslt_and_own_functions_still_work(sheets: Path) -> None:
    path = v1_sheet(sheets, "exslt.xsl", """
        xmlns:exsl="http://exslt.org/common" xmlns:str="http://exslt.org/strings"
        xmlns:math="http://exslt.org/math" xmlns:set="http://exslt.org/sets"
        xmlns:dyn="http://exslt.org/dynamic" xmlns:re="http://exslt.org/regular-expressions"
        xmlns:date="http://exslt.org/dates-and-times" xmlns:func="http://exslt.org/functions"
        xmlns:my="urn:my" extension-element-prefixes="func exsl" """,
        """<xsl:variable name="t"><n>3</n><n>1</n><n>3</n></xsl:variable>
        <o><xsl:value-of select="concat(math:max(exsl:node-set($t)/n), ',',
            count(set:distinct(exsl:node-set($t)/n)), ',', count(str:tokenize('a b c')), ',',
            dyn:evaluate('1+1'), ',', re:test('abc', '^a'), ',', my:twice(4), ',',
            date:year('2024-05-01'), ',', sum(dyn:map(exsl:node-set($t)/n, ' . * 2')))"/></o>""")
    path.write_text(path.read_text().replace(
        "</xsl:stylesheet>", '<func:function name="my:twice"><xsl:param name="n"/>'
        '<func:result select="$n * 2"/></func:function></xsl:stylesheet>'))
    assert run(str(path), sheets).data.endswith(">3,2,3,2,true,8,2024,14</o>\n")


# -- XSLT 2.0/3.0 (Saxon) ---------------------------------------------------------------------

def test_saxon_is_installed() -> None:
    """The Saxon sandbox is tested, never skipped: saxonche is part of the test extra."""
    assert importlib.util.find_spec("saxonche") is not None, \
        "saxonche is missing: install the test extra (pip install -e '.[test]')"


def v3_sheet(folder: Path, name: str, body: str, namespaces: str = "") -> str:
    (folder / name).write_text(
        '<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" '
        f'{namespaces}>\n{body}\n</xsl:stylesheet>', encoding="utf-8")
    return name


def outcome(name: str, folder: Path) -> str:
    """The output, or the error, of building and running a stylesheet on ``<r/>``."""
    try:
        return run(name, folder).data
    except (ConfigError, TransformError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture
def canary_json(tmp_path: Path) -> Path:
    path = tmp_path / "canary.json"
    path.write_text(f'{{"secret": "{CANARY}"}}', encoding="utf-8")
    return path


COMPILE_TIME = {  # label: stylesheet body; {canary} and {url} are filled in
    "static variable, unparsed-text() of a file": """
        <xsl:variable name="s" static="yes" select="unparsed-text('{canary}')"/>
        <xsl:template match="/"><o><xsl:value-of select="$s"/></o></xsl:template>""",
    "static param, doc() of a file": """
        <xsl:param name="s" static="yes" select="string(doc('{canary}'))"/>
        <xsl:template match="/"><o><xsl:value-of select="$s"/></o></xsl:template>""",
    "static variable, unparsed-text() over http": """
        <xsl:variable name="s" static="yes" select="unparsed-text('{url}/s')"/>
        <xsl:template match="/"><o><xsl:value-of select="$s"/></o></xsl:template>""",
    "use-when, unparsed-text() of a file": """
        <xsl:template match="/" use-when="contains(unparsed-text('{canary}'), 'CANARY')">
          <o>{CANARY}</o></xsl:template>""",
    "xsl:use-when on a literal result element, doc() over http": """
        <xsl:template match="/"><o><p xsl:use-when="exists(doc('{url}/d.xml'))">x</p></o>
        </xsl:template>""",
    "shadow attribute, unparsed-text() of a file": """
        <xsl:template match="/"><o><xsl:value-of _select="{{unparsed-text('{canary}')}}"/></o>
        </xsl:template>""",
    "static variable, json-doc() over http": """
        <xsl:variable name="s" static="yes" select="json-doc('{url}/j.json')"/>
        <xsl:template match="/"><o/></xsl:template>""",
}


def compile_time_sheet(label: str, folder: Path, canary: Path, listener: Listener) -> str:
    body = COMPILE_TIME[label].format(canary=canary.as_uri(), url=listener.url, CANARY=CANARY)
    return v3_sheet(folder, "static.xsl", body)


@pytest.mark.parametrize("label", sorted(COMPILE_TIME))
def test_saxon_code_run_while_compiling_is_refused(
        label: str, sheets: Path, canary: Path, listener: Listener) -> None:
    name = compile_time_sheet(label, sheets, canary, listener)
    with pytest.raises(ConfigError) as info:
        run(name, sheets)
    message = str(info.value)
    assert "static.xsl line " in message
    assert "is evaluated while the stylesheet compiles, which the sandbox does not allow" \
        in message
    assert_clean(message)


@pytest.mark.parametrize("label", sorted(COMPILE_TIME))
def test_saxon_compiles_without_file_or_network_access(
        label: str, sheets: Path, canary: Path, listener: Listener,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Second layer: with the load-time checks switched off, Saxon still reads nothing."""
    import esb.transformers.saxon as saxon

    monkeypatch.setattr(saxon, "refusals", lambda sheet: [])
    name = compile_time_sheet(label, sheets, canary, listener)
    result = " ".join(outcome(name, sheets).split())  # Saxon wraps its messages
    assert result.startswith("ConfigError: transform[0].xslt: static.xsl does not compile"), \
        result
    assert "has been prohibited" in result
    assert_clean(result)


RUN_TIME = {  # label: XPath; {canary}, {json}, {folder} and {url} are filled in
    "unparsed-text() of a file": "unparsed-text('{canary}')",
    "unparsed-text-lines() over http": "unparsed-text-lines('{url}/t')",
    "doc() of a file": "doc('{canary}')",
    "doc() over http": "doc('{url}/d.xml')",
    "document() of a file": "document('{canary}')",
    "json-doc() of a file": "json-doc('{json}')",
    "collection() of a folder": "collection('{folder}?select=*.xml')",
    "uri-collection() of a folder": "uri-collection('{folder}')",
    "parse-xml() with an external entity": (
        "parse-xml('&lt;!DOCTYPE r [&lt;!ENTITY x SYSTEM &quot;{canary}&quot;>]>"
        "&lt;r>&amp;x;&lt;/r>')"),
    "parse-xml() with an external DTD over http": (
        "parse-xml('&lt;!DOCTYPE r SYSTEM &quot;{url}/r.dtd&quot;>&lt;r/>')"),
}


@pytest.mark.parametrize("label", sorted(RUN_TIME))
def test_saxon_reads_nothing_at_run_time(
        label: str, sheets: Path, tmp_path: Path, canary: Path, canary_json: Path,
        listener: Listener) -> None:
    expr = RUN_TIME[label].format(canary=canary.as_uri(), json=canary_json.as_uri(),
                                  folder=tmp_path.as_uri(), url=listener.url)
    name = v3_sheet(sheets, "reader.xsl",
                    f'<xsl:template match="/"><o><xsl:copy-of select="{expr}"/></o>'
                    "</xsl:template>")
    with pytest.raises(TransformError) as info:
        run(name, sheets)
    message = " ".join(str(info.value).split())
    assert "stylesheet failed" in message
    assert "has been prohibited" in message or "has been disallowed" in message
    assert_clean(message)


def test_saxon_source_document_and_availability_checks_read_nothing(
        sheets: Path, canary: Path, listener: Listener) -> None:
    available = v3_sheet(sheets, "avail.xsl", f"""<xsl:template match="/"><o>
        <xsl:value-of select="doc-available('{canary.as_uri()}'),
          unparsed-text-available('{listener.url}/t')"/></o></xsl:template>""")
    assert run(available, sheets).data.endswith("<o>false false</o>")
    source = v3_sheet(sheets, "source.xsl", f"""<xsl:template match="/"><o>
        <xsl:source-document href="{canary.as_uri()}" streamable="no">
          <xsl:copy-of select="."/></xsl:source-document></o></xsl:template>""")
    with pytest.raises(TransformError, match="has been prohibited") as info:
        run(source, sheets)
    assert_clean(str(info.value))


REFUSED = {  # label: (body, namespaces, expected in the error)
    "environment-variable()": (
        "<o><xsl:value-of select=\"environment-variable('ESB_SANDBOX_CANARY')\"/></o>", "",
        "environment-variable() is not allowed (it reads the process environment)"),
    "Q{fn}environment-variable#1": (
        '<o><xsl:value-of select="Q{http://www.w3.org/2005/xpath-functions}'
        "environment-variable#1('ESB_SANDBOX_CANARY')\"/></o>", "",
        "environment-variable() is not allowed"),
    "fn:environment-variable in a text value template": (
        "<o xsl:expand-text=\"yes\">{fn:environment-variable ('ESB_SANDBOX_CANARY')}</o>",
        'xmlns:fn="http://www.w3.org/2005/xpath-functions"',
        "fn:environment-variable() is not allowed"),
    "available-environment-variables()": (
        '<o><xsl:value-of select="available-environment-variables()"/></o>', "",
        "available-environment-variables() is not allowed"),
    "function-lookup()": (
        "<o><xsl:value-of select=\"function-lookup(QName('http://www.w3.org/2005/xpath-"
        "functions', 'environment-variable'), 1)('ESB_SANDBOX_CANARY')\"/></o>", "",
        "function-lookup() is not allowed (it calls functions chosen at run time"),
    "transform()": (
        "<o><xsl:copy-of select=\"transform(map{'stylesheet-location': 'x.xsl'})?output\"/>"
        "</o>", "", "transform() is not allowed (it runs a stylesheet the sandbox cannot"),
    "load-xquery-module()": (
        "<o><xsl:value-of select=\"exists(load-xquery-module('urn:x', "
        "map{'location-hints': '{url}/m.xq'}))\"/></o>", "",
        "load-xquery-module() is not allowed"),
    "xsl:evaluate": (
        "<o><xsl:evaluate xpath=\"'environment-' || 'variable(&quot;ESB_SANDBOX_CANARY&quot;)'\"/>"
        "</o>", "", "xsl:evaluate is not allowed (it runs XPath built at run time"),
    "xsl:result-document": (
        '<xsl:result-document href="{written}"><w/></xsl:result-document>', "",
        "xsl:result-document is not allowed (the sandbox forbids writing files)"),
    "Saxon extension namespace": (
        "<o><xsl:value-of select=\"saxon:system-id()\"/></o>",
        'xmlns:saxon="http://saxon.sf.net/"', "Saxon extensions (http://saxon.sf.net/)"),
    "Q{ fn } with spaces, which XPath normalizes away": (
        '<o><xsl:value-of select="Q{ http://www.w3.org/2005/xpath-functions }'
        "environment-variable('ESB_SANDBOX_CANARY')\"/></o>", "",
        "environment-variable() is not allowed"),
    "a refused name under another prefix": (
        "<o><xsl:value-of select=\"f:environment-variable('ESB_SANDBOX_CANARY')\"/></o>",
        'xmlns:f="http://www.w3.org/2005/xpath-functions"',
        "f:environment-variable() is not allowed"),
    "Saxon extension by Q{ } with spaces": (
        '<o><xsl:value-of select="Q{  http://saxon.sf.net/ }system-id()"/></o>', "",
        "Saxon extension function system-id() is not allowed"),
    "system-property() of a Java system property": (
        "<o><xsl:value-of select=\"system-property('user.home')\"/></o>", "",
        "system-property() is only allowed with a literal xsl: property name such as "
        "'xsl:version' (other names read Java system properties)"),
    "system-property() of a computed name": (
        "<o><xsl:value-of select=\"system-property(concat('xsl:', 'version'))\"/></o>", "",
        "system-property() is only allowed with a literal xsl: property name"),
    "system-property() of a name in another namespace": (
        "<o><xsl:value-of select=\"system-property('j:user.home')\"/></o>",
        'xmlns:j="urn:java"', "system-property() is only allowed with a literal xsl:"),
    "system-property#1 as a function item": (
        "<o><xsl:value-of select=\"'user.home' ! system-property#1(.)\"/></o>", "",
        "system-property() is only allowed with a literal xsl:"),
    "system-property() by the arrow operator": (
        "<o><xsl:value-of select=\"'user.home' => system-property()\"/></o>", "",
        "system-property() is only allowed with a literal xsl:"),
    "environment-variable right after a minus": (
        "<o><xsl:value-of select=\"0 -environment-variable('ESB_SANDBOX_CANARY')\"/></o>", "",
        "environment-variable() is not allowed"),
    "Saxon extension by Q{}": (
        '<o><xsl:value-of select="Q{http://saxon.sf.net/}system-id()"/></o>', "",
        "Saxon extension function system-id() is not allowed"),
}


@pytest.mark.parametrize("label", sorted(REFUSED))
def test_saxon_refuses_what_it_cannot_sandbox(
        label: str, sheets: Path, tmp_path: Path, listener: Listener,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESB_SANDBOX_CANARY", CANARY)
    written = tmp_path / "written.xml"
    body, namespaces, expected = REFUSED[label]
    body = body.replace("{url}", listener.url).replace("{written}", written.as_uri())
    name = v3_sheet(sheets, "refused.xsl",
                    f'<xsl:template match="/">\n{body}</xsl:template>', namespaces)
    with pytest.raises(ConfigError) as info:
        run(name, sheets)
    message = str(info.value)
    assert re.search(rf"refused\.xsl line \d: {re.escape(expected)}", message), message
    assert_clean(message)
    assert not written.exists()


def test_saxon_system_property_of_xsl_names_works(sheets: Path) -> None:
    name = v3_sheet(sheets, "props.xsl", """<xsl:template match="/"><o><xsl:value-of
        select="system-property('xsl:version'), system-property( &quot;xsl:vendor&quot; ),
                system-property('Q{http://www.w3.org/1999/XSL/Transform}is-schema-aware'),
                system-property('x:version')"/></o></xsl:template>""",
                    'xmlns:x="http://www.w3.org/1999/XSL/Transform"')
    assert run(name, sheets).data.endswith("<o>3.0 Saxonica no 3.0</o>")


def test_saxon_allows_look_alikes_of_refused_names(sheets: Path) -> None:
    name = v3_sheet(sheets, "alike.xsl", """
        <xsl:function name="my:transform"><xsl:param name="s"/>
          <xsl:sequence select="upper-case($s)"/></xsl:function>
        <xsl:variable name="v" static="no" select="'x'"/>
        <xsl:template match="/">
          <o note="we transform (and validate)"><xsl:value-of select="my:transform($v)"/>
          <p>environment-variable('HOME') is literal text</p></o></xsl:template>""",
                    'xmlns:my="urn:my" exclude-result-prefixes="my"')
    assert run(name, sheets).data.endswith(
        "<o note=\"we transform (and validate)\">X<p>environment-variable('HOME') is literal "
        "text</p></o>")


@pytest.mark.parametrize("call", [
    "environment-variable('ESB_SANDBOX_CANARY')",
    "fn:environment-variable('ESB_SANDBOX_CANARY')",
    "Q{ http://www.w3.org/2005/xpath-functions }environment-variable('ESB_SANDBOX_CANARY')",
])
@pytest.mark.parametrize("defined_in", ["urn:my", " http://www.w3.org/2005/xpath-functions "])
def test_saxon_own_function_of_a_refused_name_does_not_unlock_the_real_one(
        call: str, defined_in: str, sheets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESB_SANDBOX_CANARY", CANARY)
    name = v3_sheet(sheets, "own.xsl", f"""
        <xsl:function name="Q{{{defined_in}}}environment-variable"><xsl:param name="s"/>
          <xsl:sequence select="$s"/></xsl:function>
        <xsl:template match="/"><o><xsl:value-of select="{call}"/></o></xsl:template>""",
                    'xmlns:fn="http://www.w3.org/2005/xpath-functions"')
    result = outcome(name, sheets)
    assert re.search(r"ConfigError: .*own\.xsl line 5: \S*environment-variable\(\) is not "
                     r"allowed \(it reads the process environment\)", result), result
    assert_clean(result)


def test_saxon_includes_and_imports_in_the_folder_work(sheets: Path) -> None:
    (sheets / "lib").mkdir()
    v3_sheet(sheets, "lib/inner.xsl", """<xsl:template name="inner"><in>é€</in></xsl:template>
        <xsl:template match="/" priority="-1"><imported/></xsl:template>""")
    v3_sheet(sheets, "lib/mid.xsl", '<xsl:import href="inner.xsl"/>'
             '<xsl:template name="mid"><m/></xsl:template>')
    name = v3_sheet(sheets, "main.xsl", """<xsl:import href="lib/mid.xsl"/>
        <xsl:template match="/"><o>ü<xsl:call-template name="inner"/>
        <xsl:call-template name="mid"/><xsl:apply-imports/></o></xsl:template>""")
    assert run(name, sheets).data.endswith("<o>ü<in>é€</in><m/><imported/></o>")


def test_saxon_compile_error_names_the_included_file(sheets: Path) -> None:
    (sheets / "lib").mkdir()
    v3_sheet(sheets, "lib/broken.xsl",
             '\n<xsl:template name="b"><xsl:value-of select="1 +"/></xsl:template>')
    name = v3_sheet(sheets, "main.xsl", '<xsl:include href="lib/broken.xsl"/>')
    with pytest.raises(ConfigError, match=r"main\.xsl does not compile: .* on line 3 column \d+ "
                                          r"of lib/broken\.xsl:") as info:
        run(name, sheets)
    assert "data:" not in str(info.value)


@pytest.mark.parametrize("href", ["http", "parent", "file-url"])
def test_saxon_include_outside_the_folder_is_refused(
        href: str, sheets: Path, tmp_path: Path, listener: Listener) -> None:
    outside = tmp_path / "x.xsl"
    outside.write_text('<xsl:stylesheet version="3.0" '
                       'xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
                       f'<xsl:template name="t">{CANARY}</xsl:template></xsl:stylesheet>')
    url = {"http": f"{listener.url}/x.xsl", "parent": "../x.xsl",
           "file-url": outside.as_uri()}[href]
    name = v3_sheet(sheets, "main.xsl", f'<xsl:include href="{url}"/>')
    with pytest.raises(ConfigError) as info:
        run(name, sheets)
    message = str(info.value)
    assert "xsl:include" in message
    assert ("outside the stylesheet's folder" in message) or ("not allowed" in message)
    assert_clean(message)


# -- limits: recursion and result size ---------------------------------------------------------

RUNAWAY = {  # label: (version, stylesheet body, expected in the error)
    "recursive template (lxml)": ("1.0", """
        <xsl:template match="/"><o><xsl:call-template name="r"/></o></xsl:template>
        <xsl:template name="r"><x><xsl:call-template name="r"/></x></xsl:template>""",
        f"stylesheet failed: templates, functions and variables nest deeper than "
        f"{MAX_TEMPLATE_DEPTH} levels (a runaway recursion?)"),
    "recursive function (lxml)": ("1.0", """
        <func:function name="my:f"><xsl:param name="n"/><func:result select="my:f($n + 1)"/>
        </func:function>
        <xsl:template match="/"><o><xsl:value-of select="my:f(1)"/></o></xsl:template>""",
        f"nest deeper than {MAX_TEMPLATE_DEPTH} levels"),
    "recursive template (Saxon)": ("3.0", """
        <xsl:template match="/"><o><xsl:call-template name="r"/></o></xsl:template>
        <xsl:template name="r"><x><xsl:call-template name="r"/></x></xsl:template>""",
        "stylesheet failed: Too many nested template or function calls"),
}


@pytest.mark.parametrize("label", sorted(RUNAWAY))
def test_runaway_recursion_fails_the_message(label: str, sheets: Path) -> None:
    version, body, expected = RUNAWAY[label]
    (sheets / "loop.xsl").write_text(
        f'<xsl:stylesheet version="{version}" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" '
        'xmlns:func="http://exslt.org/functions" xmlns:my="urn:my" '
        f'extension-element-prefixes="func">{body}</xsl:stylesheet>', encoding="utf-8")
    chain = build_chain([{"xslt": "loop.xsl"}], base_dir=sheets)
    for _ in range(2):  # the step stays usable
        with pytest.raises(TransformError) as info:
            chain(xml_env("<r/>"))
        assert expected in " ".join(str(info.value).split())


@pytest.mark.parametrize("version", ["1.0", "3.0"])
def test_result_larger_than_max_output_is_refused(version: str, sheets: Path) -> None:
    """A small input and a stylesheet multiplying it: the result is measured as UTF-8 bytes."""
    (sheets / "big.xsl").write_text(
        f'<xsl:stylesheet version="{version}" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:output method="text"/><xsl:template match="/"><xsl:for-each select="//n">'
        '<xsl:for-each select="//n"><xsl:value-of select="/r/@c"/></xsl:for-each>'
        "</xsl:for-each></xsl:template></xsl:stylesheet>", encoding="utf-8")
    payload = '<r c="\u20ac">' + "<n/>" * 20 + "</r>"  # 400 euro signs: 1200 bytes
    small = build_chain([{"xslt": {"stylesheet": "big.xsl", "max_output": 1199}}],
                        base_dir=sheets)
    with pytest.raises(TransformError) as info:
        small(xml_env(payload))
    assert str(info.value) == ("transformer 'xslt': output refused: the result is larger "
                               "than max_output (1199 bytes)")
    exact = build_chain([{"xslt": {"stylesheet": "big.xsl", "max_output": 1200}}],
                        base_dir=sheets)
    assert exact(xml_env(payload)).data == "\u20ac" * 400
    assert XsltSettings(stylesheet="x.xsl").max_output == 16 * 1024 * 1024
