"""Schema files a WSDL refers to (``xs:import`` / ``xs:include`` with a relative
``schemaLocation``, followed from file to file).

They are read with the WSDL, compiled with its embedded schemas, read for the structure of
acknowledgements, and served by the inbound side at ``?xsd=NAME`` with every
``schemaLocation`` pointing at the endpoint's own URL, so a caller (zeep, SoapUI ...) that
follows them finds them. A ``schemaLocation`` that is a URL, ``xs:redefine``/``xs:override``
and an include of a schema with another target namespace (a "chameleon" include) are refused
at load time: each would leave a caller, or the acknowledgement, without the schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import url2pathname

from lxml import etree

from esb.bus.errors import ConfigError
from esb.bus.xmlsafe import XmlError, parse_xml

XSD = "http://www.w3.org/2001/XMLSchema"
_REFERENCES = (f"{{{XSD}}}import", f"{{{XSD}}}include")
_UNSUPPORTED = (f"{{{XSD}}}redefine", f"{{{XSD}}}override")
#: The ``xml:`` namespace is built into every schema processor: its customary import from
#: w3.org is left as the WSDL has it.
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class SchemaFile:
    """One schema file: the name it is served under, where it was read, its document."""

    name: str
    path: Path
    root: etree._Element


@dataclass
class SchemaFiles:
    """Every schema file reachable from a WSDL's embedded schemas."""

    by_name: dict[str, SchemaFile] = field(default_factory=dict)
    by_path: dict[Path, str] = field(default_factory=dict)

    @property
    def roots(self) -> list[etree._Element]:
        return [f.root for f in self.by_name.values()]

    def add(self, path: Path, root: etree._Element) -> None:
        stem, suffix = Path(_UNSAFE.sub("_", path.name)).stem, path.suffix or ".xsd"
        name, n = f"{stem}{suffix}", 1
        while name in self.by_name:
            n += 1
            name = f"{stem}-{n}{suffix}"
        self.by_name[name] = SchemaFile(name, path, root)
        self.by_path[path] = name

    def relocate(self, schema: etree._Element, base: Path,
                 location: Callable[[str], str]) -> None:
        """Point each local ``schemaLocation`` of ``schema`` (a schema read from folder
        ``base``, or a copy of one) at ``location(name)`` of the file it refers to."""
        for node in references(schema):
            target = self.by_path.get(_resolve(base, node.get("schemaLocation", "")))
            if target is not None:
                node.set("schemaLocation", location(target))

    def document(self, name: str, location: Callable[[str], str]) -> bytes | None:
        """Schema file ``name`` with its references relocated, or None when there is none."""
        found = self.by_name.get(name)
        if found is None:
            return None
        copy = deepcopy_document(found.root)
        self.relocate(copy, found.path.parent, location)
        return etree.tostring(copy, xml_declaration=True, encoding="utf-8")


def deepcopy_document(root: etree._Element) -> etree._Element:
    """A copy of ``root`` in a document of its own."""
    return etree.fromstring(etree.tostring(root))


def references(schema: etree._Element) -> Iterator[etree._Element]:
    """The ``xs:import`` / ``xs:include`` children of ``schema`` that name a file."""
    for node in schema.iterchildren(*_REFERENCES):
        location = node.get("schemaLocation")
        if location and not _URL.match(location):
            yield node


def _resolve(base: Path, location: str) -> Path:
    return (base / url2pathname(location)).resolve()


def _read(path: Path, where: str) -> etree._Element:
    try:
        root = parse_xml(path.read_bytes(), max_bytes=None, base_url=str(path))
    except OSError as exc:
        raise ConfigError([f"wsdl: {where} refers to {path}, which cannot be read: {exc}"]
                          ) from exc
    except XmlError as exc:
        raise ConfigError([f"wsdl: {path}: {exc}"]) from exc
    if root.tag != f"{{{XSD}}}schema":
        raise ConfigError([f"wsdl: {path} (referred to by {where}) is not an XML Schema"])
    return root


def _check(schema: etree._Element, where: str) -> list[str]:
    """What in ``schema`` cannot be served as is."""
    problems = []
    for node in schema.iterchildren(*_UNSUPPORTED):
        problems.append(f"wsdl: {where}: xs:{etree.QName(node).localname} is not supported; "
                        "serve a self-contained WSDL: inline the redefined schema")
    for node in schema.iterchildren(*_REFERENCES):
        location = node.get("schemaLocation", "")
        if _URL.match(location) and node.get("namespace") != _XML_NS:
            problems.append(f"wsdl: {where}: schemaLocation {location!r} is a URL; serve a "
                            f"self-contained WSDL: inline the schema of {location} in "
                            "wsdl:types, or save it next to the WSDL and refer to it by a "
                            "relative path")
    return problems


def load_schema_files(schemas: list[etree._Element], wsdl: Path) -> SchemaFiles:
    """Every schema file the embedded ``schemas`` of ``wsdl`` refer to, transitively; every
    problem is a :class:`ConfigError`."""
    files = SchemaFiles()
    pending = [(schema, wsdl.resolve().parent, str(wsdl)) for schema in schemas]
    problems: list[str] = []
    while pending:
        schema, base, where = pending.pop(0)
        problems += _check(schema, where)
        for node in references(schema):
            path = _resolve(base, node.get("schemaLocation", ""))
            if path in files.by_path:
                continue
            root = _read(path, where)
            if node.tag == f"{{{XSD}}}include" and (root.get("targetNamespace") !=
                                                    schema.get("targetNamespace")):
                problems.append(f"wsdl: {path} is included by {where} with another target "
                                "namespace; give it the same targetNamespace or inline it")
            files.add(path, root)
            pending.append((root, path.parent, str(path)))
    if problems:
        raise ConfigError(problems)
    return files
