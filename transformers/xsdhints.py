"""Type hints for the XML ↔ JSON convention read from an XSD.

A deliberately shallow reading: every ``xs:element``/``xs:attribute`` with a ``name`` and a
built-in numeric or boolean ``type`` (or a simple type restricting one) gives a hint keyed by
its local name (``@name`` for attributes); elements with ``maxOccurs`` above 1 go to
``force_list``. Names reused with different types across the schema get the first one seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from esb.bus.xmlsafe import XmlError, parse_xml
from esb.transformers.convention import TypeName
from esb.transformers.sandbox import sandboxed_parser

XS = "http://www.w3.org/2001/XMLSchema"
#: The hint each built-in type gives, by its local name.
_BUILTIN: dict[str, TypeName] = {
    **dict.fromkeys(("integer", "int", "long", "short", "byte", "nonNegativeInteger",
                     "positiveInteger", "nonPositiveInteger", "negativeInteger", "unsignedLong",
                     "unsignedInt", "unsignedShort", "unsignedByte"), "integer"),
    **dict.fromkeys(("decimal", "double", "float"), "number"),
    "boolean": "boolean",
}


@dataclass
class Hints:
    types: dict[str, TypeName] = field(default_factory=dict)
    force_list: set[str] = field(default_factory=set)


def _builtin(type_name: str | None) -> TypeName | None:
    return _BUILTIN.get((type_name or "").rsplit(":", 1)[-1])


def hints_from_xsd(path: Path) -> Hints:
    """Read type and list hints from the schema at ``path`` (no includes are followed)."""
    parser, _ = sandboxed_parser(path.parent, owner="schema")
    try:
        root = parse_xml(path.read_bytes(), parser=parser, base_url=str(path))
    except (OSError, XmlError) as exc:
        raise ValueError(f"cannot read XSD {path.name}: {exc}") from None
    simple: dict[str, TypeName] = {}
    for st in root.iter(f"{{{XS}}}simpleType"):
        restriction = st.find(f"{{{XS}}}restriction")
        kind = _builtin(restriction.get("base")) if restriction is not None else None
        if st.get("name") and kind:
            simple[st.get("name", "")] = kind
    hints = Hints()
    for tag, prefix in ((f"{{{XS}}}element", ""), (f"{{{XS}}}attribute", "@")):
        for el in root.iter(tag):
            name = el.get("name")
            if not name:
                continue
            kind = _builtin(el.get("type")) or simple.get((el.get("type") or "").split(":")[-1])
            if kind is None:
                inline = el.find(f"{{{XS}}}simpleType/{{{XS}}}restriction")
                kind = _builtin(inline.get("base")) if inline is not None else None
            if kind:
                hints.types.setdefault(prefix + name, kind)
            if prefix == "" and el.get("maxOccurs", "1") not in ("0", "1"):
                hints.force_list.add(name)
    return hints

