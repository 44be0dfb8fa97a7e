"""What the inbound side needs from a WSDL 1.1 (document/literal): operations, their input
and output elements, SOAP actions, the schema (embedded, and the files it refers to), and the
addresses to rewrite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from lxml import etree

from esb.adapters.soap.schema import build_schema
from esb.adapters.soap.schemafiles import XSD, SchemaFiles, load_schema_files
from esb.bus.errors import ConfigError
from esb.bus.xmlsafe import XmlError, hardened_parser, parse_xml

WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_BIND = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12_BIND = "http://schemas.xmlsoap.org/wsdl/soap12/"


@dataclass
class Operation:
    """One document/literal operation."""

    name: str
    input: str  # Clark notation {ns}local of the body element
    output: str | None = None
    actions: dict[str, str] = field(default_factory=dict)  # "1.1"/"1.2" -> soapAction


@dataclass
class ServiceDescription:
    """A parsed WSDL: the served document, its operations, its compiled schema, the schema
    elements (embedded ones and files) and the schema files served beside it."""

    document: etree._Element
    operations: dict[str, Operation]
    schema: etree.XMLSchema
    schemas: list[etree._Element]
    files: SchemaFiles = field(default_factory=SchemaFiles)
    #: The folder the WSDL was read from (``schemaLocation`` values are relative to it).
    base: Path = Path(".")

    def find(self, tag: str, action: str | None) -> Operation | None:
        """The operation whose input element is ``tag`` (the action settles ties)."""
        matches = [op for op in self.operations.values() if op.input == tag]
        if len(matches) > 1 and action:
            by_action = [op for op in matches if action in op.actions.values()]
            matches = by_action or matches
        return matches[0] if matches else None

    @property
    def versions(self) -> frozenset[str]:
        """The SOAP versions ("1.1", "1.2") the WSDL binds an operation in (both when it
        binds none explicitly)."""
        bound = frozenset(v for op in self.operations.values() for v in op.actions)
        return bound or frozenset({"1.1", "1.2"})

    def action_problem(self, operation: Operation, version: str, action: str) -> str | None:
        """Why the request's SOAPAction (1.1 header, 1.2 ``action`` parameter) cannot go with
        a body calling ``operation``, or None. An empty action is accepted (WS-I BP allows
        ``""``); a non-empty one must be the operation's own when it declares one, and may
        never be another operation's."""
        if not action:
            return None
        declared = operation.actions.get(version, "")
        if declared:
            return None if action == declared else (
                f"SOAPAction {action!r} does not match the body's operation "
                f"{operation.name} (its SOAPAction is {declared!r})")
        others = [op.name for op in self.operations.values()
                  if op is not operation and action in op.actions.values()]
        if others:
            return (f"SOAPAction {action!r} names operation {others[0]}, but the body calls "
                    f"{operation.name}")
        return None

    def with_address(self, location: str) -> bytes:
        """The WSDL with every soap:address / soap12:address pointing at ``location``, and
        every schema file it refers to at ``location?xsd=NAME``."""
        doc = etree.fromstring(etree.tostring(self.document), hardened_parser())
        for ns in (SOAP11_BIND, SOAP12_BIND):
            for address in doc.iter(f"{{{ns}}}address"):
                address.set("location", location)
        for schema in doc.iterfind(f"{{{WSDL}}}types/{{{XSD}}}schema"):
            self.files.relocate(schema, self.base, schema_url(location))
        return etree.tostring(doc, xml_declaration=True, encoding="utf-8")

    def schema_file(self, name: str, location: str) -> bytes | None:
        """Schema file ``name`` as served from ``location``, or None when there is none."""
        return self.files.document(name, schema_url(location))


def schema_url(location: str) -> Callable[[str], str]:
    """Where the endpoint at ``location`` serves a schema file, by name."""
    return lambda name: f"{location}?xsd={quote(name)}"


def _qname(element: etree._Element, value: str | None, default_ns: str | None) -> str | None:
    if not value:
        return None
    prefix, _, local = value.rpartition(":")
    ns = element.nsmap.get(prefix or None, default_ns if not prefix else None)
    if prefix and ns is None:
        raise ConfigError([f"wsdl: undeclared prefix {prefix!r} in {value!r}"])
    return f"{{{ns}}}{local}" if ns else local


def load_description(path: Path) -> ServiceDescription:
    """Parse and check a WSDL file; every problem is a :class:`ConfigError`."""
    try:
        root = parse_xml(path.read_bytes(), max_bytes=None, base_url=str(path))
    except OSError as exc:
        raise ConfigError([f"wsdl: cannot read {path}: {exc}"]) from exc
    except XmlError as exc:
        raise ConfigError([f"wsdl: {path}: {exc}"]) from exc
    if root.tag != f"{{{WSDL}}}definitions":
        raise ConfigError([f"wsdl: {path} is not a WSDL 1.1 document"])
    tns = root.get("targetNamespace")

    messages: dict[str, str | None] = {}
    for message in root.iterfind(f"{{{WSDL}}}message"):
        parts = message.findall(f"{{{WSDL}}}part")
        element = _qname(parts[0], parts[0].get("element"), tns) if len(parts) == 1 else None
        messages[f"{{{tns}}}{message.get('name')}" if tns else message.get("name", "")] = element

    problems: list[str] = []
    operations: dict[str, Operation] = {}
    for port_type in root.iterfind(f"{{{WSDL}}}portType"):
        for op in port_type.iterfind(f"{{{WSDL}}}operation"):
            name = op.get("name", "")
            io = {}
            for kind in ("input", "output"):
                node = op.find(f"{{{WSDL}}}{kind}")
                ref = _qname(node, node.get("message"), tns) if node is not None else None
                io[kind] = messages.get(ref) if ref else None
                if ref and io[kind] is None:
                    problems.append(f"wsdl: operation {name!r} {kind} message {ref!r} is not a "
                                    "single-part document/literal message")
            if io["input"] and name not in operations:
                operations[name] = Operation(name, io["input"], io["output"])

    for binding in root.iterfind(f"{{{WSDL}}}binding"):
        for version, ns in (("1.1", SOAP11_BIND), ("1.2", SOAP12_BIND)):
            soap_binding = binding.find(f"{{{ns}}}binding")
            if soap_binding is None:
                continue
            default_style = soap_binding.get("style", "document")
            for op in binding.iterfind(f"{{{WSDL}}}operation"):
                soap_op = op.find(f"{{{ns}}}operation")
                style = soap_op.get("style", default_style) if soap_op is not None else "document"
                if style != "document":
                    problems.append(f"wsdl: operation {op.get('name')!r} is {style}-style; "
                                    "only document/literal is supported")
                if op.get("name") in operations and soap_op is not None:
                    operations[op.get("name", "")].actions[version] = soap_op.get("soapAction", "")
    if not operations:
        problems.append(f"wsdl: {path} declares no document/literal operation")
    if problems:
        raise ConfigError(problems)
    schemas = list(root.iterfind(f"{{{WSDL}}}types/{{{XSD}}}schema"))
    files = load_schema_files(schemas, path)
    schema = build_schema(root, schemas, path, files)
    return ServiceDescription(root, operations, schema, schemas + files.roots, files,
                              path.resolve().parent)
