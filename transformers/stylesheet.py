"""Loading and inspecting an XSLT stylesheet inside the sandbox, before it is compiled.

What the transformer needs to know up front: the XSLT version (1.0 runs on lxml, 2.0/3.0 on
Saxon), the top-level ``xsl:param`` names (to fill from envelope attributes and extensions),
and the ``xsl:output`` method/media-type/encoding (to set the resulting ``datacontenttype``).
Included and imported stylesheets are inspected too; they are loaded through the same
:class:`FolderResolver`, so a stylesheet reaching outside its folder is refused here already.

A 1.0 stylesheet (run by libxslt) may only use EXSLT extensions: libxslt also registers
non-EXSLT ones (``saxon:evaluate``, ``libxslt:debug``, ``xt:document`` ...), and code in the
process may register more, so every prefixed function call and every extension element prefix
must resolve to an :data:`EXSLT` namespace (or to a function the stylesheet defines itself with
``func:function``), and the namespaces in :data:`LIBXSLT_EXTRAS` may not even be declared.
EXSLT's ``dyn:evaluate`` and ``dyn:map`` evaluate a string as XPath, with every namespace the
stylesheet declares in scope; a computed string could name any function registered in the
process (lxml's ``FunctionNamespace`` registry is global), so that argument must be a string
literal, which is then checked as written like any other expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urljoin

from lxml import etree

from esb.bus.errors import ConfigError
from esb.bus.xmlsafe import XmlError, parse_xml
from esb.transformers.sandbox import FolderResolver, SandboxViolation, sandboxed_parser

XSL = "http://www.w3.org/1999/XSL/Transform"
_TOP = {f"{{{XSL}}}stylesheet", f"{{{XSL}}}transform"}
_LINKS = (f"{{{XSL}}}include", f"{{{XSL}}}import")

#: The EXSLT modules: the only extension namespaces a 1.0 stylesheet may use.
EXSLT = frozenset({
    "http://exslt.org/common",
    "http://exslt.org/dates-and-times",
    "http://exslt.org/dynamic",
    "http://exslt.org/functions",
    "http://exslt.org/math",
    "http://exslt.org/random",
    "http://exslt.org/regular-expressions",
    "http://exslt.org/sets",
    "http://exslt.org/strings",
})
#: Namespaces of libxslt's own non-EXSLT extensions. Declaring one is refused outright: a
#: dyn:evaluate() of a computed string could otherwise reach them through its prefix.
LIBXSLT_EXTRAS = frozenset({
    "http://icl.com/saxon",
    "http://xmlsoft.org/XSLT/namespace",
    "http://www.jclark.com/xt",
    "org.apache.xalan.xslt.extensions.Redirect",
})
_FUNC_FUNCTION = "{http://exslt.org/functions}function"
DYNAMIC = "http://exslt.org/dynamic"
#: EXSLT dynamic functions, by the position of the argument they evaluate as XPath.
EVALUATED_ARGUMENT = {"evaluate": 0, "map": 1, "sum": 1, "min": 1, "max": 1, "closure": 1}

# A character of an XPath name: anything but white space and ASCII punctuation other than
# "-", "." and "_". A superset of NCName characters, so a name is never cut short.
_NAME = r"[^\s!-,/:-@\[-\^`{-~]"
# The first character of a name: not "-", "." or a digit either, so in "0 -dyn:evaluate(x)"
# (minus, then a call) the name starts at "d" and the call is seen.
_START = r"[^\s!-@\[-\^`{-~]"
#: A function call or named function reference: ``name(``, ``p:name(``, ``Q{uri}name#1``.
#: Matched in raw attribute values (string literals and all), so nothing is missed; a string
#: that merely looks like a call is a false alarm at worst. A match may begin after any
#: character that cannot start a name (even inside a longer name: a false alarm at worst).
_CALL = re.compile(rf"(?<!{_START})(?<!\$)(?:Q\{{(?P<uri>[^{{}}]*)\}}|"
                   rf"(?P<prefix>{_START}{_NAME}*):)?(?P<local>{_START}{_NAME}*)\s*[(#]")
#: A whole argument that is one string literal (XPath 1.0: no escapes inside).
_LITERAL = re.compile(r"\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)')\s*")


class StylesheetError(ConfigError):
    """The stylesheet cannot be loaded: a ConfigError whose ``problems`` say why (as text, on
    one line)."""

    def __str__(self) -> str:
        return "; ".join(self.problems)


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
    encoding: str | None = None
    #: Root elements of the stylesheet and of everything it includes/imports, by the path of
    #: their file (the key :meth:`link_target` returns).
    modules: dict[str, etree._Element] = field(default_factory=dict)

    def module_name(self, key: str) -> str:
        """A module's file for messages, relative to the stylesheet's folder when inside it."""
        path = Path(key)
        return str(path.relative_to(self.path.parent)) if path.is_relative_to(
            self.path.parent) else path.name

    def link_target(self, base: str, link: etree._Element) -> str:
        """The vetted file an ``xsl:include``/``xsl:import`` in module ``base`` names."""
        href = link.get("href") or ""
        try:
            return str(self.resolver.allowed_path(urljoin(base, href)))
        except SandboxViolation as exc:
            raise StylesheetError([f"{self.module_name(base)}: xsl:{etree.QName(link).localname}"
                                   f" {href!r}: {exc}"]) from None


def load_stylesheet(path: Path) -> Stylesheet:
    """Parse ``path`` with the hardened, folder-confined parser and inspect it and its includes."""
    if not path.is_file():
        raise StylesheetError([f"stylesheet {str(path)!r} not found"])
    parser, resolver = sandboxed_parser(path.parent)
    root = _parse(path, parser)
    version = _version(root)
    sheet = Stylesheet(path=path, doc=root.getroottree(), resolver=resolver, version=version)
    _inspect(sheet, root, str(path), parser, seen={str(path)})
    if version < 2.0:
        problems = extension_problems(sheet)
        if problems:
            raise StylesheetError(problems)
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
    sheet.modules[base] = root
    if root.tag not in _TOP:
        return  # a simplified stylesheet (literal result element) has no top-level declarations
    for child in root:
        if child.tag == f"{{{XSL}}}param" and child.get("name"):
            sheet.params.add(child.get("name", ""))
        elif child.tag == f"{{{XSL}}}output":
            # The including stylesheet's own xsl:output wins over its includes'.
            sheet.output_method = sheet.output_method or child.get("method")
            sheet.media_type = sheet.media_type or child.get("media-type")
            sheet.encoding = sheet.encoding or child.get("encoding")
        elif child.tag in _LINKS:
            target = sheet.link_target(base, child)
            if target in seen:
                continue
            seen.add(target)
            _inspect(sheet, _parse(Path(target), parser), target, parser, seen)


class Call(NamedTuple):
    """A function call or named function reference found in ``text``."""

    #: Set for ``p:name``; None for ``Q{uri}name`` and bare names.
    prefix: str | None
    #: Set for ``Q{uri}name``.
    uri: str | None
    local: str
    text: str
    #: Index in :attr:`text` just after the call's ``(`` (or the reference's ``#``).
    end: int

    @property
    def name(self) -> str:
        """The name as written (``Q{uri}`` shown as such)."""
        if self.uri is not None:
            return f"Q{{{self.uri}}}{self.local}"
        return f"{self.prefix}:{self.local}" if self.prefix else self.local

    def arguments(self) -> list[str] | None:
        """The raw argument texts; None for a named function reference (``f#1``) or a call
        that is never closed (which cannot compile)."""
        if self.text[self.end - 1] == "#":
            return None
        return call_arguments(self.text, self.end)


def function_calls(text: str) -> Iterator[Call]:
    """Every function call or reference in ``text``."""
    for match in _CALL.finditer(text):
        yield Call(match["prefix"], match["uri"], match["local"], text, match.end())


def call_arguments(text: str, start: int) -> list[str] | None:
    """Split the arguments of a call whose ``(`` ends just before ``start``.

    Quotes delimit literals, brackets nest; None when the call is never closed. Conservative
    for later XPath versions: what it cannot read as one literal is simply not a literal.
    """
    args: list[str] = []
    depth, begin, i = 0, start, start
    while i < len(text):
        char = text[i]
        if char in "\"'":
            i = text.find(char, i + 1)
            if i < 0:
                return None
        elif char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        elif char in ")]}":
            if char != ")":
                return None
            args.append(text[begin:i])
            return args if len(args) > 1 or args[0].strip() else []
        elif char == "," and not depth:
            args.append(text[begin:i])
            begin = i + 1
        i += 1
    return None


def string_literal(argument: str) -> str | None:
    """The content of ``argument`` when it is exactly one string literal, else None."""
    match = _LITERAL.fullmatch(argument)
    if match is None:
        return None
    return match["dq"] if match["dq"] is not None else match["sq"]


def extension_problems(sheet: Stylesheet) -> list[str]:
    """Every use of a non-EXSLT extension function or element in a 1.0 stylesheet."""
    defined = _user_functions(sheet)
    problems = []
    for key, root in sheet.modules.items():
        where = sheet.module_name(key)
        for el in root.iter(etree.Element):
            problems += _extension_declarations(el, where)
            problems += _extension_elements(el, where)
            for value in el.attrib.values():
                problems += _extension_calls(el, value, where, defined)
    return problems


def _user_functions(sheet: Stylesheet) -> set[tuple[str | None, str]]:
    """The ``(namespace, name)`` of each ``func:function`` the stylesheet defines."""
    found = set()
    for root in sheet.modules.values():
        for el in root.iter(_FUNC_FUNCTION):
            prefix, _, local = (el.get("name") or "").rpartition(":")
            found.add((el.nsmap.get(prefix) if prefix else None, local))
    return found


def _extension_calls(el: etree._Element, value: str, where: str,
                     defined: set[tuple[str | None, str]]) -> list[str]:
    problems = []
    for call in function_calls(value):
        namespace = call.uri if call.uri is not None else (
            el.nsmap.get(call.prefix) if call.prefix else None)
        if namespace == DYNAMIC:
            problems += _dynamic_call(el, call, where)
        # An undeclared prefix cannot name an extension: libxslt refuses to compile it.
        if namespace is None or namespace in EXSLT or (namespace, call.local) in defined:
            continue
        problems.append(f"{where} line {el.sourceline}: extension function {call.name}() in "
                        f"namespace {namespace} is not allowed (only EXSLT extensions are)")
    return problems


def _dynamic_call(el: etree._Element, call: Call, where: str) -> list[str]:
    """A ``dyn:`` call must get the expression it evaluates as a string literal.

    The literal's content is part of the attribute value, so the caller's scan checks the
    functions it calls (and any ``dyn:`` call nested in it) like the rest of the expression.
    """
    position = EVALUATED_ARGUMENT.get(call.local)
    if position is None:
        return []  # not an evaluating function (libxslt rejects unknown ones when compiling)
    args = call.arguments()
    if args is not None and len(args) > position and string_literal(args[position]) is not None:
        return []
    return [f"{where} line {el.sourceline}: {call.name}() must be given the expression it "
            "evaluates as a string literal: a computed expression could call functions the "
            "sandbox never checks"]


def _extension_declarations(el: etree._Element, where: str) -> list[str]:
    parent = el.getparent()
    inherited = set(parent.nsmap.items()) if parent is not None else set()
    return [f"{where} line {el.sourceline}: namespace {namespace} (prefix {prefix!r}) holds "
            "libxslt extensions beyond EXSLT and may not be declared"
            for prefix, namespace in el.nsmap.items()
            if namespace in LIBXSLT_EXTRAS and (prefix, namespace) not in inherited]


def _extension_elements(el: etree._Element, where: str) -> list[str]:
    if el.tag in _TOP:
        prefixes = el.get("extension-element-prefixes")
    elif etree.QName(el).namespace == XSL:
        return []
    else:
        prefixes = el.get(f"{{{XSL}}}extension-element-prefixes")
    problems = []
    for prefix in (prefixes or "").split():
        namespace = el.nsmap.get(None if prefix == "#default" else prefix)
        if namespace not in EXSLT:
            problems.append(f"{where} line {el.sourceline}: extension element prefix {prefix!r} "
                            f"(namespace {namespace or 'undeclared'}) is not allowed "
                            "(only EXSLT extensions are)")
    return problems
