"""Hostile payloads and stylesheets: each refused with a clear error, and no effect.

A canary file's content must never show up in any output or error, and a local TCP listener
must never see a connection.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.transformers.chain import build_chain

CANARY = "CANARY-7f3a9c1e-do-not-leak"
XSL_OPEN = ('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" '
            'xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl">')
IDENTITY = XSL_OPEN + """
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/>
  </xsl:copy></xsl:template>
</xsl:stylesheet>"""


@dataclass
class Listener:
    port: int
    connections: list[tuple[str, int]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.05)
    seen = Listener(sock.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = sock.accept()
            except OSError:
                continue
            seen.connections.append(addr)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join(2)
    sock.close()
    assert seen.connections == [], "something reached the network"


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
    "xsd": lambda sheets: [{"xsd": str(Path(__file__).parent / "data/schemas/order.xsd")}],
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
