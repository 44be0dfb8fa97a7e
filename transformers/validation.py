"""The ``xsd`` and ``json-schema`` transformers: validate, pass the envelope on unchanged.

A violation raises :class:`~esb.bus.errors.TransformError` naming where (line and XPath for XSD,
a JSON pointer for JSON Schema) and which rule failed; at most :data:`MAX_REPORTED` are listed.

Neither ever reads another file or URL while validating. An XSD's ``xs:include``/``xs:import``/
``xs:redefine`` are loaded once, through the folder-confined resolver. A JSON Schema is validated
against an empty :class:`referencing.Registry` (only the schema document itself and the JSON
Schema meta-schemas bundled with ``jsonschema``), and every ``$ref`` is resolved when the step is
built: one that points elsewhere fails the build instead of being fetched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import exceptions as js_exceptions
from jsonschema import validators
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from lxml import etree
from pydantic import Field

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.bus.xmlsafe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    LIBXML_MAX_DEPTH,
    XmlError,
    parse_xml,
)
from esb.transformers.payload import json_input, xml_root
from esb.transformers.sandbox import SandboxViolation, sandboxed_parser
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec

if TYPE_CHECKING:
    from referencing._core import Resolver  # not re-exported by referencing

MAX_REPORTED = 10
#: Keywords that reference another (sub)schema by URI.
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


class XsdSettings(TransformerSettings):
    """Options of ``xsd``."""

    #: Path to the XSD; its includes/imports must lie in its own folder.
    schema_: str = Field(alias="schema")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=1, le=LIBXML_MAX_DEPTH)


class JsonSchemaSettings(TransformerSettings):
    """Options of ``json-schema``."""

    #: Path to a JSON Schema file, or the schema inline. ``$schema`` picks the draft
    #: (Draft 2020-12 when absent); every ``$ref`` must resolve inside the schema document.
    schema_: str | dict[str, Any] = Field(alias="schema")


def load_xsd(path: Path) -> etree.XMLSchema:
    """Load an XSD with the hardened, folder-confined parser."""
    if not path.is_file():
        raise ConfigError([f"schema {str(path)!r} not found"])
    parser, resolver = sandboxed_parser(path.parent, owner="schema")
    try:
        doc = parse_xml(path.read_bytes(), parser=parser, base_url=str(path))
        return etree.XMLSchema(doc)
    except (XmlError, SandboxViolation) as exc:
        raise ConfigError([f"{path.name}: {exc}"]) from None
    except etree.XMLSchemaParseError as exc:
        refused = "; ".join(resolver.refused)
        raise ConfigError([f"{path.name}: {refused or exc}"]) from None


def make_xsd(settings: XsdSettings, ctx: TransformerContext) -> Callable[[Envelope], Envelope]:
    """Factory of ``xsd``."""
    schema = load_xsd(ctx.path(settings.schema_, "schema"))
    name = ctx.name

    def validate_xml(env: Envelope) -> Envelope:
        root = xml_root(name, env, max_bytes=settings.max_bytes, max_depth=settings.max_depth,
                        limits=ctx.xml_limits)
        if schema.validate(root):
            return env
        problems = [f"line {e.line} {e.path}: {e.message}"
                    for e in list(schema.error_log)[:MAX_REPORTED]]
        raise TransformError(name, "schema violation: " + "; ".join(problems))

    return validate_xml


def json_pointer(parts: Any) -> str:
    """RFC 6901 pointer of a jsonschema error path."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts) or "/"


def make_json_schema(settings: JsonSchemaSettings, ctx: TransformerContext
                     ) -> Callable[[Envelope], Envelope]:
    """Factory of ``json-schema``: load and check the schema once."""
    schema = settings.schema_
    if isinstance(schema, str):
        path = ctx.path(schema, "schema")
        try:
            schema = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError([f"schema {schema!r}: {exc.strerror}"]) from None
        except orjson.JSONDecodeError as exc:
            raise ConfigError([f"schema {schema!r} is not valid JSON: {exc}"]) from None
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except js_exceptions.SchemaError as exc:
        raise ConfigError([f"invalid JSON Schema at {json_pointer(exc.path)}: {exc.message}"]
                          ) from None
    validator = local_validator(cls, schema)
    name = ctx.name

    def validate_json(env: Envelope) -> Envelope:
        try:
            errors = sorted(validator.iter_errors(json_input(name, env)),
                            key=lambda e: list(map(str, e.absolute_path)))
        except referencing.exceptions.Unresolvable as exc:  # checked at build: never expected
            raise TransformError(name, f"schema reference not resolvable: {exc}") from None
        if not errors:
            return env
        problems = [f"{json_pointer(e.absolute_path)}: {e.message} (rule: {e.validator} at "
                    f"schema {json_pointer(e.absolute_schema_path)})"
                    for e in errors[:MAX_REPORTED]]
        raise TransformError(name, "schema violation: " + "; ".join(problems))

    return validate_json


def local_validator(cls: type[Validator], schema: Any) -> Validator:
    """A validator whose references reach only ``schema`` itself; ConfigError otherwise.

    An empty registry means nothing is ever retrieved (jsonschema adds the schema document and
    its bundled meta-schemas). Every reference is looked up now, the way validation would, so a
    reference to another document, a file or a URL fails the build rather than a message.
    """
    registry: referencing.Registry[Any] = referencing.Registry()
    specification = referencing.jsonschema.specification_with(
        cls.ID_OF(cls.META_SCHEMA) or "", default=referencing.Specification.OPAQUE)
    resource = specification.create_resource(schema)
    resolver = META_SCHEMAS.combine(registry).resolver_with_root(resource)
    problems = [f"{keyword} {ref!r} at {_locate(schema, keyword, ref)}: {why}"
                for keyword, ref, why in _unresolvable(cls, specification, resolver, resource,
                                                       set())]
    if problems:
        raise ConfigError(problems)
    return cls(schema, registry=registry)


def _unresolvable(cls: type[Validator], specification: referencing.Specification[Any],
                  resolver: Resolver[Any],
                  resource: referencing.jsonschema.SchemaResource, seen: set[int],
                  ) -> Iterator[tuple[str, str, str]]:
    """``(keyword, reference, why)`` for each reference validation could not follow locally.

    Walks the subschemas the draft defines and, through each reference, the subschema it
    reaches (which may sit under a keyword the draft does not know).
    """
    if id(resource.contents) in seen:
        return
    seen.add(id(resource.contents))
    contents = resource.contents
    for keyword in REF_KEYWORDS:
        ref = contents.get(keyword) if isinstance(contents, dict) else None
        if keyword not in cls.VALIDATORS or not isinstance(ref, str):
            continue
        try:
            resolved = resolver.lookup(ref)
        except referencing.exceptions.PointerToNowhere:
            yield keyword, ref, "points nowhere in the schema"
            continue
        except referencing.exceptions.Unresolvable:
            yield keyword, ref, ("not found in the schema document; other documents, files and "
                                 "URLs are never fetched (keep definitions in $defs)")
            continue
        yield from _unresolvable(cls, specification, resolved.resolver,
                                 specification.create_resource(resolved.contents), seen)
    for sub in resource.subresources():
        yield from _unresolvable(cls, specification, resolver.in_subresource(sub), sub, seen)


def _locate(node: Any, keyword: str, ref: str, path: tuple[Any, ...] = ()) -> str:
    """JSON pointer of the first object in ``node`` whose ``keyword`` is ``ref``."""
    if isinstance(node, dict):
        if node.get(keyword) == ref:
            return json_pointer(path)
        children: Any = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return ""
    for key, child in children:
        found = _locate(child, keyword, ref, (*path, key))
        if found:
            return found
    return ""


XSD = TransformerSpec(
    name="xsd",
    summary="Validate an XML payload against an XSD (envelope passes unchanged)",
    settings=XsdSettings,
    factory=make_xsd,
    shorthand="schema",
)

JSON_SCHEMA = TransformerSpec(
    name="json-schema",
    summary="Validate a JSON payload against a JSON Schema (envelope passes unchanged)",
    settings=JsonSchemaSettings,
    factory=make_json_schema,
    shorthand="schema",
)
