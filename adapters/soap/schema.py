"""The WSDL's embedded XSD(s), and the schema files they refer to, compiled into one lxml
``XMLSchema``, and a look into the declared structure of an element (for building
acknowledgements)."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from esb.adapters.soap.schemafiles import XSD, SchemaFiles, deepcopy_document
from esb.bus.errors import ConfigError
from esb.bus.xmlsafe import hardened_parser

_EMBEDDED = "esb-embedded-{}.xsd"
_FILE = "esb-file-{}"


class _Embedded(etree.Resolver):
    """Serves the embedded schemas and the schema files (as read and checked at load time) to
    libxml2 under made-up local names."""

    def __init__(self, documents: dict[str, bytes]) -> None:
        super().__init__()
        self.documents = documents

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        name = system_url.rsplit("/", 1)[-1]
        if name in self.documents:
            return self.resolve_string(self.documents[name], context)
        return None


def _standalone(definitions: etree._Element, schema: etree._Element) -> etree._Element:
    """A copy of an embedded schema carrying the namespaces declared on the WSDL root."""
    nsmap = {**definitions.nsmap, **schema.nsmap}
    copy = etree.Element(schema.tag, attrib=dict(schema.attrib), nsmap=nsmap)
    for child in schema:
        copy.append(deepcopy(child))
    return copy


def build_schema(definitions: etree._Element, schemas: list[etree._Element],
                 path: Path, files: SchemaFiles | None = None) -> etree.XMLSchema:
    """Compile every ``wsdl:types`` schema; imports between them, and of ``files``, resolve
    in memory."""
    files = files or SchemaFiles()
    standalone = [_standalone(definitions, s) for s in schemas]
    by_ns = {s.get("targetNamespace", ""): i for i, s in enumerate(standalone)}
    for doc in standalone:
        files.relocate(doc, path.resolve().parent, _FILE.format)
        for imp in doc.iterfind(f"{{{XSD}}}import"):
            ns = imp.get("namespace", "")
            if imp.get("schemaLocation") is None and ns in by_ns:
                imp.set("schemaLocation", _EMBEDDED.format(by_ns[ns]))
    documents = {_EMBEDDED.format(i): etree.tostring(d) for i, d in enumerate(standalone)}
    for file in files.by_name.values():
        copy = deepcopy_document(file.root)
        files.relocate(copy, file.path.parent, _FILE.format)
        documents[_FILE.format(file.name)] = etree.tostring(copy)
    wrapper = etree.Element(f"{{{XSD}}}schema", nsmap={"xs": XSD})
    for i, doc in enumerate(standalone):
        namespace = doc.get("targetNamespace")
        if namespace:
            etree.SubElement(wrapper, f"{{{XSD}}}import", namespace=namespace,
                             schemaLocation=_EMBEDDED.format(i))
        else:  # no target namespace (often one that only imports): the wrapper's own
            etree.SubElement(wrapper, f"{{{XSD}}}include", schemaLocation=_EMBEDDED.format(i))
    parser = hardened_parser(resolver=_Embedded(documents))
    try:
        root = etree.fromstring(etree.tostring(wrapper), parser, base_url=str(path))
        return etree.XMLSchema(root)
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise ConfigError([f"wsdl: {path}: the schema does not compile: {exc}"]) from exc


@dataclass
class Child:
    """A child element an element's declared type allows."""

    tag: str
    required: bool
    base: str = "string"  # local name of the XSD built-in it derives from
    enumeration: list[str] = field(default_factory=list)


def _global(schemas: list[etree._Element], kind: str, qname: str) -> etree._Element | None:
    ns, _, local = qname[1:].partition("}") if qname.startswith("{") else ("", "", qname)
    for schema in schemas:
        if schema.get("targetNamespace", "") == ns:
            for node in schema.iterfind(f"{{{XSD}}}{kind}"):
                if node.get("name") == local:
                    return node
    return None


def _resolve(node: etree._Element, value: str | None) -> str:
    prefix, _, local = (value or "").rpartition(":")
    ns = node.nsmap.get(prefix or None)
    return f"{{{ns}}}{local}" if ns else local


def _simple(schemas: list[etree._Element], node: etree._Element) -> tuple[str, list[str]]:
    """Built-in base and enumeration of an element's simple type (``string`` if unsure)."""
    type_name = node.get("type")
    simple = node.find(f"{{{XSD}}}simpleType")
    if type_name:
        qname = _resolve(node, type_name)
        if qname.startswith(f"{{{XSD}}}"):
            return qname.rpartition("}")[2], []
        simple = _global(schemas, "simpleType", qname)
    restriction = simple.find(f"{{{XSD}}}restriction") if simple is not None else None
    if restriction is None:
        return "string", []
    enums = [e.get("value", "") for e in restriction.iterfind(f"{{{XSD}}}enumeration")]
    base = _resolve(restriction, restriction.get("base")).rpartition("}")[2] or "string"
    return base, enums


def children(schemas: list[etree._Element], element: str) -> list[Child]:
    """The child elements (one level, sequence/all) declared for global ``element``."""
    decl = _global(schemas, "element", element)
    if decl is None:
        return []
    schema = decl.getparent()
    complex_type = decl.find(f"{{{XSD}}}complexType")
    if complex_type is None and decl.get("type"):
        complex_type = _global(schemas, "complexType", _resolve(decl, decl.get("type")))
    if complex_type is None:
        return []
    qualified = schema.get("elementFormDefault") == "qualified"
    ns = schema.get("targetNamespace", "")
    out = []
    for group in ("sequence", "all"):
        for node in complex_type.iterfind(f"{{{XSD}}}{group}/{{{XSD}}}element"):
            if node.get("ref"):
                tag = _resolve(node, node.get("ref"))
                typed = _global(schemas, "element", tag)
            else:
                form = node.get("form", "qualified" if qualified else "unqualified")
                tag = f"{{{ns}}}{node.get('name')}" if form == "qualified" and ns \
                    else node.get("name", "")
                typed = node
            base, enums = _simple(schemas, typed) if typed is not None else ("string", [])
            out.append(Child(tag, node.get("minOccurs", "1") != "0", base, enums))
    return out
