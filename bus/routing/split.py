"""The splitter: one envelope in, its parts out — a route's ``split:`` (pure, no I/O).

What a part is:

* ``jmespath: EXPR`` — each element of the JSON array the expression selects (``@``: the
  payload itself is the array); a part carries the element as JSON;
* ``xpath: EXPR`` — each element node the expression selects in an XML payload, serialized with
  every namespace declaration in scope where it stood (so prefixes used in attribute values,
  ``xsi:type="o:Big"``, still resolve); prefixes come from ``namespaces`` and the route file's;
* ``fhir: bundle`` — each ``entry[].resource`` of a FHIR Bundle (``application/fhir+json``).

Every part is a new envelope: id ``<parent id>.<position>`` (stable, so a sender's retry of the
same message gives the same part ids), the parent's type, source and extensions, and the
split's place in the sequence — the CloudEvents ``sequence`` extension (the position, zero
padded so that text order is numeric order) plus ``splitid`` (the parent's id: the
correlation), ``splitindex`` (1-based) and ``splitsize``. The parent's idempotency key, when it
has one, becomes ``<key>.<position>``.

A payload the expression cannot be applied to, a selection that is not a list of parts, no
parts at all or more than ``max_parts``: :class:`SplitError` — the plan dead-letters the
envelope for that route, whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jmespath
import orjson
from jmespath.exceptions import JMESPathError
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.xmlsafe import XmlError, parse_xml

JSON = "application/json"
FHIR_JSON = "application/fhir+json"


class SplitError(ValueError):
    """The envelope cannot be split as the route says (the message says why)."""


@dataclass(frozen=True)
class Splitter:
    """A compiled ``split:`` of one route."""

    kind: str  # "jmespath" | "xpath" | "fhir"
    expression: str
    max_parts: int
    namespaces: tuple[tuple[str, str], ...] = ()
    _compiled: Any = None

    @classmethod
    def compile(cls, spec: Any, file_namespaces: dict[str, str] | None = None) -> Splitter:
        """From a route's ``split:`` model; raises ValueError for a bad expression."""
        max_parts = spec.max_parts
        if spec.jmespath is not None:
            try:
                compiled = jmespath.compile(spec.jmespath)
            except JMESPathError as exc:
                raise ValueError(f"split.jmespath {spec.jmespath!r}: {exc}") from exc
            return cls("jmespath", spec.jmespath, max_parts, (), compiled)
        if spec.xpath is not None:
            namespaces = {**(file_namespaces or {}), **spec.namespaces}
            try:
                compiled = etree.XPath(spec.xpath, namespaces=namespaces)
            except etree.XPathError as exc:
                raise ValueError(f"split.xpath {spec.xpath!r}: {exc}") from exc
            return cls("xpath", spec.xpath, max_parts, tuple(sorted(namespaces.items())),
                       compiled)
        return cls("fhir", "entry[].resource", max_parts)

    def describe(self) -> str:
        return f"{self.kind} {self.expression}"

    def __call__(self, envelope: Envelope) -> list[Envelope]:
        if self.kind == "xpath":
            parts, content_type = self._xml(envelope), "application/xml"
        else:
            parts = self._json(envelope)
            content_type = FHIR_JSON if self.kind == "fhir" else JSON
        if not parts:
            raise SplitError(f"split ({self.describe()}) found no parts")
        if len(parts) > self.max_parts:
            raise SplitError(f"split ({self.describe()}) found {len(parts)} parts, more than "
                             f"max_parts ({self.max_parts})")
        return [_part(envelope, data, content_type, i, len(parts))
                for i, data in enumerate(parts, start=1)]

    def _json(self, envelope: Envelope) -> list[Any]:
        data = envelope.data
        if not envelope.is_json:
            raise SplitError(f"split ({self.describe()}) needs a JSON payload, got "
                             f"{envelope.datacontenttype}")
        if isinstance(data, (bytes, str)):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise SplitError(f"split: the payload is not valid JSON: {exc}") from None
        if self.kind == "fhir":
            if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
                raise SplitError("split (fhir bundle): the payload is not a FHIR Bundle")
            entries = data.get("entry") or []
            if not isinstance(entries, list):
                raise SplitError("split (fhir bundle): Bundle.entry is not a list")
            missing = [i for i, e in enumerate(entries, 1)
                       if not isinstance(e, dict) or not isinstance(e.get("resource"), dict)]
            if missing:
                raise SplitError(f"split (fhir bundle): entries {missing[:5]} have no resource")
            return [e["resource"] for e in entries]
        selected = self._compiled.search(data)
        if not isinstance(selected, list):
            raise SplitError(f"split ({self.describe()}) selected "
                             f"{type(selected).__name__ if selected is not None else 'nothing'}"
                             ", not a list")
        return selected

    def _xml(self, envelope: Envelope) -> list[bytes]:
        data = envelope.data
        if not isinstance(data, (bytes, str)) or envelope.is_json:
            raise SplitError(f"split ({self.describe()}) needs an XML payload, got "
                             f"{envelope.datacontenttype}")
        try:
            root = parse_xml(data)
        except XmlError as exc:
            raise SplitError(f"split: the payload is not well-formed XML: {exc}") from None
        try:
            selected = self._compiled(root)
        except etree.XPathError as exc:
            raise SplitError(f"split ({self.describe()}): {exc}") from None
        if not isinstance(selected, list) or not all(
                isinstance(node, etree._Element) for node in selected):
            raise SplitError(f"split ({self.describe()}) must select element nodes")
        # tostring() of a node keeps every namespace declaration in scope where it stood.
        return [etree.tostring(node) for node in selected]


def _part(parent: Envelope, data: Any, content_type: str, position: int, size: int
          ) -> Envelope:
    width = len(str(size))
    key = parent.idempotencykey
    subject = parent.subject
    if content_type == FHIR_JSON and isinstance(data, dict) and data.get("resourceType"):
        subject = f"{data['resourceType']}/{data['id']}" if data.get("id") else subject
    return parent.model_copy(update={
        "id": f"{parent.id}.{position}",
        "data": data,
        "datacontenttype": content_type,
        "subject": subject,
        "idempotencykey": f"{key}.{position}" if key else None,
        "extensions": {**parent.extensions, "sequence": str(position).zfill(width),
                       "splitid": parent.id, "splitindex": position, "splitsize": size},
    })
