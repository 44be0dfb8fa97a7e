"""The ``xslt`` transformer: XSLT 1.0 + EXSLT on lxml, compiled once, run in a sandbox.

Stylesheets declaring version 2.0/3.0 run on Saxon (:mod:`esb.transformers.saxon`) when the
optional ``saxonche`` package is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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
from esb.transformers.payload import with_text, xml_input
from esb.transformers.sandbox import ACCESS_CONTROL, SandboxViolation
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec
from esb.transformers.stylesheet import Stylesheet, StylesheetError, load_stylesheet

#: Envelope attributes offered to stylesheets declaring an ``xsl:param`` of the same name.
ENVELOPE_PARAMS = ("id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
                   "correlationid", "causationid", "idempotencykey", "traceparent",
                   "esbendpoint", "esbroute", "esbdestination")
_METHOD_TYPES = {"xml": "application/xml", "text": "text/plain", "html": "text/html",
                 "xhtml": "application/xhtml+xml", "json": "application/json"}

ParamValue = str | int | float | bool


class XsltSettings(TransformerSettings):
    """Options of the ``xslt`` step."""

    #: Path to the stylesheet, relative to the configuration folder.
    stylesheet: str
    #: Static ``xsl:param`` values (strings are passed as strings, numbers/booleans as such).
    params: dict[str, ParamValue] = Field(default_factory=dict)
    #: Overrides the content type derived from ``xsl:output``.
    content_type: str | None = None
    max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=1, le=LIBXML_MAX_DEPTH)


def output_type(sheet: Stylesheet, override: str | None) -> str:
    if override:
        return override
    if sheet.media_type:
        return sheet.media_type
    return _METHOD_TYPES.get((sheet.output_method or "xml").split(":")[-1], "application/xml")


def static_params(values: Mapping[str, ParamValue]) -> dict[str, Any]:
    """``params`` option values as XPath expressions for lxml."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            out[name] = "true()" if value else "false()"
        elif isinstance(value, int | float):
            out[name] = repr(value)
        else:
            out[name] = etree.XSLT.strparam(value)
    return out


def envelope_param(env: Envelope, name: str) -> str | None:
    value = getattr(env, name, None)
    if value is None:
        return None
    if name == "time":
        return value.isoformat()
    return str(value)


class XsltTransformer:
    """A compiled stylesheet applied to each envelope's XML payload."""

    def __init__(self, name: str, sheet: Stylesheet, xslt: etree.XSLT,
                 settings: XsltSettings) -> None:
        self.name = name
        self.sheet = sheet
        self.xslt = xslt
        self.max_bytes = settings.max_bytes
        self.max_depth = settings.max_depth
        self.content_type = output_type(sheet, settings.content_type)
        self.static = static_params(settings.params)
        self.from_envelope = tuple(p for p in ENVELOPE_PARAMS
                                   if p in sheet.params and p not in self.static)

    def __call__(self, env: Envelope) -> Envelope:
        data = xml_input(self.name, env)
        try:
            doc = parse_xml(data, max_bytes=self.max_bytes, max_depth=self.max_depth)
        except XmlError as exc:
            raise TransformError(self.name, f"input refused: {exc}") from None
        params = dict(self.static)
        for attr in self.from_envelope:
            value = envelope_param(env, attr)
            if value is not None:
                params[attr] = etree.XSLT.strparam(value)
        try:
            result = self.xslt(doc, **params)
        except SandboxViolation as exc:
            raise TransformError(self.name, f"sandbox refused a read: {exc}") from None
        except etree.XSLTApplyError as exc:
            # The access control's refusals (network reads, any write) read "... rights ...".
            what = "sandbox refused" if " rights " in str(exc) else "stylesheet failed"
            raise TransformError(self.name, f"{what}: {exc}") from None
        return with_text(env, self.name, str(result), self.content_type)


def compile_xslt(settings: XsltSettings, ctx: TransformerContext) -> Callable[[Envelope],
                                                                                Envelope]:
    """Factory: load the stylesheet in the sandbox and compile it (lxml or Saxon)."""
    path = (ctx.base_dir / settings.stylesheet).resolve()
    try:
        sheet = load_stylesheet(path)
    except StylesheetError as exc:
        raise ConfigError(exc.problems) from None
    unknown = sorted(set(settings.params) - sheet.params)
    if unknown and sheet.version < 2.0:
        raise ConfigError([f"params {unknown} are not declared as xsl:param in "
                           f"{_rel(path, ctx.base_dir)}"])
    if sheet.version >= 2.0:
        from esb.transformers.saxon import compile_saxon

        return compile_saxon(ctx.name, sheet, settings)
    try:
        xslt = etree.XSLT(sheet.doc, access_control=ACCESS_CONTROL)
    except SandboxViolation as exc:
        raise ConfigError([f"{_rel(path, ctx.base_dir)}: {exc}"]) from None
    except etree.XSLTParseError as exc:
        log = "; ".join((f"line {e.line}: " if e.line else "") + e.message
                        for e in exc.error_log) or str(exc)
        raise ConfigError([f"{_rel(path, ctx.base_dir)} does not compile: {log}"]) from None
    return XsltTransformer(ctx.name, sheet, xslt, settings)


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)


SPEC = TransformerSpec(
    name="xslt",
    summary="Apply an XSLT 1.0 stylesheet (lxml, EXSLT; 2.0/3.0 on Saxon) in a sandbox",
    settings=XsltSettings,
    factory=compile_xslt,
    shorthand="stylesheet",
)
