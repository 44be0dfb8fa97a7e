"""esb's XML ↔ JSON convention (used by ``xml-to-json`` and ``json-to-xml``).

* The document is an object with one key, the root element's name: ``{"order": ...}``.
* Element and attribute names are written as in the XML, ``prefix:local``; the namespace
  declarations an element makes are kept as ``"@xmlns"`` / ``"@xmlns:prefix"`` attributes.
* Attributes are ``"@name"`` keys; an element with attributes or children keeps its text under
  ``"#text"``; an element with neither is just its text (``null`` when empty).
* Children become keys; repeated siblings become an array (``force_list`` names always are).
* Text is a string unless a type hint says ``integer``, ``number`` or ``boolean``.

Round-trips exactly (up to XML canonicalization) for documents whose same-named siblings are
adjacent and that have no mixed content; comments and processing instructions are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Literal

from lxml import etree

XML_NS = "http://www.w3.org/XML/1998/namespace"
TEXT = "#text"
TypeName = Literal["string", "integer", "number", "boolean"]


class ConventionError(ValueError):
    """The data cannot be expressed in the convention (bad name, bad typed value ...)."""


# -- XML -> JSON ------------------------------------------------------------------------------

class XmlToJson:
    """Converts lxml trees to JSON values; options are fixed at construction."""

    def __init__(self, *, force_list: Collection[str] = (), types: Mapping[str, TypeName] = {},
                 strip_namespaces: bool = False) -> None:
        self.force_list = frozenset(force_list)
        self.types = dict(types)
        self.strip = strip_namespaces

    def document(self, root: etree._Element) -> dict[str, Any]:
        return {self._name(root, root.tag): self._value(root, {})}

    def _name(self, el: etree._Element, tag: str, attribute: bool = False) -> str:
        qn = etree.QName(tag)
        if self.strip or qn.namespace is None:
            return qn.localname
        if attribute:
            prefix = "xml" if qn.namespace == XML_NS else _prefix_for(el, qn.namespace)
        else:
            prefix = el.prefix
        return f"{prefix}:{qn.localname}" if prefix else qn.localname

    def _typed(self, name: str, text: str) -> Any:
        kind = self.types.get(name) or self.types.get(name.rsplit(":", 1)[-1].lstrip("@"))
        return text if kind in (None, "string") else parse_typed(name, text, kind)

    def _value(self, el: etree._Element, parent_ns: Mapping[str | None, str]) -> Any:
        obj: dict[str, Any] = {}
        if not self.strip:
            for prefix, uri in el.nsmap.items():
                if parent_ns.get(prefix) != uri:
                    obj["@xmlns" if prefix is None else f"@xmlns:{prefix}"] = uri
        for key, value in el.attrib.items():
            name = "@" + self._name(el, key, attribute=True)
            obj[name] = self._typed(name, value)
        children = [c for c in el if isinstance(c.tag, str)]
        text = el.text
        if children:
            # Whitespace between child elements is layout; text after children (mixed content)
            # cannot be placed and is appended to #text.
            parts = [t for t in (text, *(c.tail for c in children)) if t and t.strip()]
            text = "".join(parts) if parts else None
        name = self._name(el, el.tag)
        if not obj and not children:
            return None if text is None else self._typed(name, text)
        if text is not None:
            obj[TEXT] = self._typed(name, text)
        groups: dict[str, list[Any]] = {}
        for child in children:
            groups.setdefault(self._name(child, child.tag), []).append(
                self._value(child, el.nsmap))
        for key, items in groups.items():
            obj[key] = items if len(items) > 1 or _local(key) in self.force_list \
                or key in self.force_list else items[0]
        return obj


def _local(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def _prefix_for(el: etree._Element, uri: str) -> str | None:
    for prefix, bound in el.nsmap.items():
        if bound == uri and prefix is not None:
            return prefix
    return None


def parse_typed(name: str, text: str, kind: TypeName) -> Any:
    """Convert ``text`` per the hint ``kind`` (``integer``/``number``/``boolean``)."""
    raw = text.strip()
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            if raw.lstrip("+-").isdigit():
                return int(raw)
            value = float(raw)
            if math.isfinite(value):
                return value
        elif kind == "boolean" and raw in ("true", "false", "1", "0"):
            return raw in ("true", "1")
    except ValueError:
        pass
    raise ConventionError(f"{name}: {_clip(text)!r} is not a valid {kind}")


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


# -- JSON -> XML ------------------------------------------------------------------------------

def json_to_element(value: Any, *, root: str | None = None,
                    namespaces: Mapping[str, str] = {}) -> etree._Element:
    """Build an element tree from a JSON value in the convention.

    Without ``root`` the value must be an object with exactly one key (the root element);
    with it, ``value`` is the root element's content. ``namespaces`` (prefix → URI, ``""`` for
    the default namespace) are declared on the root.
    """
    if root is None:
        if not isinstance(value, dict) or len(value) != 1:
            raise ConventionError("expected an object with exactly one key, the root element "
                                  "(or set the 'root' option)")
        ((root, value),) = value.items()
    if isinstance(value, list):
        raise ConventionError(f"{root}: the root element cannot be an array")
    scope = {(p or None): uri for p, uri in namespaces.items()}
    return _build(root, value, None, {}, scope)


def _build(name: str, value: Any, parent: etree._Element | None,
           scope: Mapping[str | None, str], declare: dict[str | None, str]) -> etree._Element:
    fields = value if isinstance(value, dict) else {}
    for key, uri in fields.items():
        if key == "@xmlns":
            declare[None] = uri
        elif key.startswith("@xmlns:"):
            declare[key[7:]] = uri
    inner = {**scope, **declare}
    tag = _clark(name, inner, attribute=False)
    try:
        nsmap = {p: u for p, u in declare.items() if u} or None
        el = (etree.Element(tag, nsmap=nsmap) if parent is None
              else etree.SubElement(parent, tag, nsmap=nsmap))
    except ValueError as exc:
        raise ConventionError(f"{name}: {exc}") from None
    if not isinstance(value, dict):
        el.text = _text(name, value)
        return el
    for key, item in value.items():
        if key == "@xmlns" or key.startswith("@xmlns:"):
            continue
        if key.startswith("@"):
            try:
                el.set(_clark(key[1:], inner, attribute=True), _text(key, item))
            except ValueError as exc:
                raise ConventionError(f"{key}: {exc}") from None
        elif key == TEXT:
            el.text = _text(f"{name}/#text", item)
        elif isinstance(item, list):
            for entry in item:
                if isinstance(entry, list):
                    raise ConventionError(f"{key}: arrays of arrays have no XML form")
                _build(key, entry, el, inner, {})
        else:
            _build(key, item, el, inner, {})
    return el


def _clark(name: str, scope: Mapping[str | None, str], *, attribute: bool) -> str:
    prefix, _, local = name.rpartition(":")
    if not prefix:
        uri = None if attribute else scope.get(None)
        return f"{{{uri}}}{local}" if uri else local
    if prefix == "xml":
        return f"{{{XML_NS}}}{local}"
    uri = scope.get(prefix)
    if not uri:
        raise ConventionError(f"{name}: namespace prefix {prefix!r} is not declared "
                              "(add \"@xmlns:" + prefix + "\" or the 'namespaces' option)")
    return f"{{{uri}}}{local}"


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return value if isinstance(value, str) else repr(value)
    raise ConventionError(f"{name}: an object or array cannot be text or an attribute value")
