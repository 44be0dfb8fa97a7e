"""Loading and inspecting an XSLT stylesheet inside the sandbox, before it is compiled.

What the transformer needs to know up front: the XSLT version (1.0 runs on lxml, 2.0/3.0 on
Saxon), the top-level ``xsl:param`` names (to fill from envelope attributes), and the
``xsl:output`` method/media-type (to set the resulting ``datacontenttype``). Included and imported
stylesheets are inspected too; they are loaded through the same :class:`FolderResolver`, so a
stylesheet reaching outside its folder is refused here already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from lxml import etree

from esb.bus.xmlsafe import XmlError, parse_xml
from esb.transformers.sandbox import FolderResolver, SandboxViolation, sandboxed_parser

XSL = "http://www.w3.org/1999/XSL/Transform"
_TOP = {f"{{{XSL}}}stylesheet", f"{{{XSL}}}transform"}
_LINKS = (f"{{{XSL}}}include", f"{{{XSL}}}import")


class StylesheetError(Exception):
    """The stylesheet cannot be loaded; ``problems`` are ready for a ConfigError."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Stylesheet:
    """A parsed stylesheet and what was learnt about it (including its includes/imports)."""

    path: Path
    doc: etree._ElementTree
    resolver: FolderResolver
    version: float
    params: set[str] = field(default_factory=set)
    output_method: str | None = None
    media_type: str | None = None
    files: list[Path] = field(default_factory=list)
    #: Root elements of the stylesheet and of everything it includes/imports.
    roots: list[etree._Element] = field(default_factory=list)


def load_stylesheet(path: Path) -> Stylesheet:
    """Parse ``path`` with the hardened, folder-confined parser and inspect it and its includes."""
    if not path.is_file():
        raise StylesheetError([f"stylesheet {str(path)!r} not found"])
    parser, resolver = sandboxed_parser(path.parent)
    root = _parse(path, parser)
    version = _version(root)
    sheet = Stylesheet(path=path, doc=root.getroottree(), resolver=resolver, version=version)
    _inspect(sheet, root, str(path), parser, seen={str(path)})
    return sheet


def _parse(path: Path, parser: etree.XMLParser) -> etree._Element:
    try:
        return parse_xml(path.read_bytes(), parser=parser, base_url=str(path))
    except XmlError as exc:
        raise StylesheetError([f"{path.name}: {exc}"]) from None
    except OSError as exc:
        raise StylesheetError([f"{path.name}: {exc.strerror}"]) from None


def _version(root: etree._Element) -> float:
    raw = root.get("version") if root.tag in _TOP else root.get(f"{{{XSL}}}version")
    if raw is None:
        raise StylesheetError(["not an XSLT stylesheet (no xsl:stylesheet/@version)"])
    try:
        return float(raw)
    except ValueError:
        raise StylesheetError([f"invalid XSLT version {raw!r}"]) from None


def _inspect(sheet: Stylesheet, root: etree._Element, base: str, parser: etree.XMLParser,
             seen: set[str]) -> None:
    sheet.roots.append(root)
    if root.tag not in _TOP:
        return  # a simplified stylesheet (literal result element) has no top-level declarations
    for child in root:
        if child.tag == f"{{{XSL}}}param" and child.get("name"):
            sheet.params.add(child.get("name", ""))
        elif child.tag == f"{{{XSL}}}output":
            # The including stylesheet's own xsl:output wins over its includes'.
            sheet.output_method = sheet.output_method or child.get("method")
            sheet.media_type = sheet.media_type or child.get("media-type")
        elif child.tag in _LINKS:
            href = child.get("href") or ""
            url = urljoin(base, href)
            try:
                target = sheet.resolver.allowed_path(url)
            except SandboxViolation as exc:
                raise StylesheetError([f"xsl:{etree.QName(child).localname} {href!r}: {exc}"]
                                      ) from None
            if str(target) in seen:
                continue
            seen.add(str(target))
            sheet.files.append(target)
            _inspect(sheet, _parse(target, parser), str(target), parser, seen)
