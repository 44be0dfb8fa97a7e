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
    """Converts lxml trees to JSON values; options are fixed at construction.

    A recursive walk over each element's children (lxml's C iteration, no per-element event
    tuples or stack records: ~1.5x faster than an ``iterwalk`` over the same tree). Recursion
    is bounded: the trees come from :func:`esb.bus.xmlsafe.parse_xml`, at most
    ``LIBXML_MAX_DEPTH`` (256) deep. Where namespaces are declared comes from one
    ``start-ns`` walk (skipped when names are stripped): no per-element ``nsmap``. Each
    distinct tag's JSON name is looked up once per document, and worked out once per
    converter (a bounded cache: a document of many distinct names cannot grow it without
    limit)."""

    _CACHE_LIMIT = 4096

    def __init__(self, *, force_list: Collection[str] = (), types: Mapping[str, TypeName] = {},
                 strip_namespaces: bool = False) -> None:
        self.force_list = frozenset(force_list)
        self.types = dict(types)
        self.strip = strip_namespaces
        self._names: dict[Any, str] = {}

    def document(self, root: etree._Element) -> dict[str, Any]:
        strip, force, name_of = self.strip, self.force_list, self._name
        typed = self._typed if self.types else None
        declared = {} if strip else _declarations(root)
        # An element's JSON name depends on its tag alone in this document unless one
        # namespace is bound to two prefixes here: then per element, by its own prefix.
        seen: dict[str, str] | None = {} if strip or _one_prefix_each(declared) else None

        def value(el: etree._Element, name: str) -> Any:
            text = el.text
            obj: dict[str, Any] | None = None
            if declared and el in declared:
                obj = {f"@xmlns:{prefix}" if prefix else "@xmlns": uri
                       for prefix, uri in declared[el]}
            attrs = el.items()
            if attrs:
                if obj is None:
                    obj = {}
                for key, raw in attrs:
                    attr = "@" + name_of(el, key, True)
                    obj[attr] = typed(attr, raw) if typed else raw
            groups: dict[str, list[Any]] | None = None
            if len(el):
                tails: list[str | None] = []
                for child in el:
                    tag = child.tag
                    if tag.__class__ is not str:  # a comment or processing instruction
                        continue
                    child_name = None if seen is None else seen.get(tag)
                    if child_name is None:
                        child_name = name_of(child, tag, False)
                        if seen is not None:
                            seen[tag] = child_name
                    child_value = value(child, child_name)
                    if groups is None:
                        groups = {child_name: [child_value]}
                    elif child_name in groups:
                        groups[child_name].append(child_value)
                    else:
                        groups[child_name] = [child_value]
                    tails.append(child.tail)
            if groups is None:
                if obj is None:
                    return None if text is None else (typed(name, text) if typed else text)
            else:
                # Whitespace between child elements is layout; text after children (mixed
                # content) cannot be placed and is appended to #text.
                parts = [t for t in (text, *tails) if t and t.strip()]
                text = "".join(parts) if parts else None
                if obj is None:
                    obj = {}
            if text is not None:
                obj[TEXT] = typed(name, text) if typed else text
            if groups is not None:
                for key, items in groups.items():
                    obj[key] = items if len(items) > 1 or (force and (
                        key in force or key.rsplit(":", 1)[-1] in force)) else items[0]
            return obj

        root_name = name_of(root, root.tag, False)
        try:
            return {root_name: value(root, root_name)}
        finally:
            # ``value`` calls itself through its closure: a reference cycle (the function,
            # its cells and what they hold) left for the cyclic GC unless the cell is emptied.
            value = None  # type: ignore[assignment]

    def _name(self, el: etree._Element, tag: str, attribute: bool) -> str:
        if attribute and not self.strip and tag[0] == "{":
            return self._qualified(el, tag, True)  # the prefix depends on the scope: no cache
        key: Any = tag if self.strip or tag[0] != "{" else (tag, el.prefix)
        name = self._names.get(key)
        if name is None:
            name = self._qualified(el, tag, attribute)
            if len(self._names) >= self._CACHE_LIMIT:
                self._names.clear()
            self._names[key] = name
        return name

    def _qualified(self, el: etree._Element, tag: str, attribute: bool) -> str:
        if tag[0] != "{":
            return tag
        uri, _, local = tag[1:].partition("}")
        if self.strip:
            return local
        if not attribute:
            prefix = el.prefix
        elif uri == XML_NS:
            prefix = "xml"
        else:
            prefix = _prefix_for(el, uri)
        return f"{prefix}:{local}" if prefix else local

    def _typed(self, name: str, text: str) -> Any:
        kind = self.types.get(name) or self.types.get(name.rsplit(":", 1)[-1].lstrip("@"))
        return text if kind in (None, "string") else parse_typed(name, text, kind)


def _declarations(root: etree._Element) -> dict[etree._Element, list[tuple[str, str]]]:
    """The elements of ``root`` that declare namespaces, with what each declares."""
    found: dict[etree._Element, list[tuple[str, str]]] = {}
    pending: list[tuple[str, str]] = []
    for event, item in etree.iterwalk(root, events=("start-ns", "start")):
        if event == "start-ns":
            pending.append(item)
        elif pending and item.tag.__class__ is str:
            found[item], pending = pending, []
    return found


def _one_prefix_each(declared: Mapping[Any, list[tuple[str, str]]]) -> bool:
    """Whether no namespace is bound to two prefixes (the default one counting as one)."""
    prefixes: dict[str, str] = {}
    for pairs in declared.values():
        for prefix, uri in pairs:
            if prefixes.setdefault(uri, prefix) != prefix:
                return False
    return True


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
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise ConventionError(f"{name}: {shown!r} is not a valid {kind}")


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
