"""The ``xsd`` and ``json-schema`` transformers: validate, pass the envelope on unchanged.

A violation raises :class:`~esb.bus.errors.TransformError` naming where (line and XPath for XSD,
a JSON pointer for JSON Schema) and which rule failed; at most :data:`MAX_REPORTED` are listed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from jsonschema import exceptions as js_exceptions
from jsonschema import validators
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
from esb.transformers.payload import json_input, xml_input
from esb.transformers.sandbox import SandboxViolation, sandboxed_parser
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec

MAX_REPORTED = 10


class XsdSettings(TransformerSettings):
    """Options of ``xsd``."""

    #: Path to the XSD; its includes/imports must lie in its own folder.
    schema_: str = Field(alias="schema")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=1, le=LIBXML_MAX_DEPTH)


class JsonSchemaSettings(TransformerSettings):
    """Options of ``json-schema``."""

    #: Path to a JSON Schema file, or the schema inline. ``$schema`` picks the draft
    #: (Draft 2020-12 when absent); ``$ref`` to other documents is not fetched.
    schema_: str | dict[str, Any] = Field(alias="schema")


def load_xsd(path: Path) -> etree.XMLSchema:
    """Load an XSD with the hardened, folder-confined parser."""
    if not path.is_file():
        raise ConfigError([f"schema {str(path)!r} not found"])
    parser, resolver = sandboxed_parser(path.parent, owner="schema")
    try:
        doc = parse_xml(path.read_bytes(), parser=parser, base_url=str(path))
        return etree.XMLSchema(doc)
    except XmlError as exc:
        raise ConfigError([f"{path.name}: {exc}"]) from None
    except SandboxViolation as exc:
        raise ConfigError([f"{path.name}: {exc}"]) from None
    except etree.XMLSchemaParseError as exc:
        refused = "; ".join(resolver.refused)
        raise ConfigError([f"{path.name}: {refused or exc}"]) from None


def make_xsd(settings: XsdSettings, ctx: TransformerContext) -> Callable[[Envelope], Envelope]:
    """Factory of ``xsd``."""
    schema = load_xsd((ctx.base_dir / settings.schema_).resolve())
    name = ctx.name

    def validate_xml(env: Envelope) -> Envelope:
        try:
            root = parse_xml(xml_input(name, env), max_bytes=settings.max_bytes,
                             max_depth=settings.max_depth)
        except XmlError as exc:
            raise TransformError(name, f"input refused: {exc}") from None
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
        path = (ctx.base_dir / schema).resolve()
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
    validator = cls(schema)
    name = ctx.name

    def validate_json(env: Envelope) -> Envelope:
        errors = sorted(validator.iter_errors(json_input(name, env)),
                        key=lambda e: list(map(str, e.absolute_path)))
        if not errors:
            return env
        problems = [f"{json_pointer(e.absolute_path)}: {e.message} (rule: {e.validator} at "
                    f"schema {json_pointer(e.absolute_schema_path)})"
                    for e in errors[:MAX_REPORTED]]
        raise TransformError(name, "schema violation: " + "; ".join(problems))

    return validate_json


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
