"""The ``xslt`` transformer: XSLT 1.0 + EXSLT on lxml, compiled once, run in a sandbox.

Stylesheets declaring version 2.0/3.0 run on Saxon (:mod:`esb.transformers.saxon`) when the
optional ``saxonche`` package is installed.

Bounds on one transform: it runs in a sandbox process (:mod:`esb.transformers.xslt_process`)
and is stopped past ``timeout`` or ``max_memory``; templates, functions and variables nest at
most :data:`MAX_TEMPLATE_DEPTH` deep (libxslt's own recursion guard, set explicitly because the
setting is process-wide); a result larger than ``max_output`` bytes fails the message.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from lxml import etree
from pydantic import Field

from esb.bus.config.units import Duration, Size
from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.bus.payload import is_json, is_utf8
from esb.bus.xmlsafe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    LIBXML_MAX_DEPTH,
    XmlError,
    XmlLimits,
    parse_xml,
)
from esb.transformers.payload import with_text, xml_input, xml_root
from esb.transformers.sandbox import ACCESS_CONTROL, SandboxViolation
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec
from esb.transformers.stylesheet import XSL, Stylesheet, load_stylesheet
from esb.transformers.xslt_process import RunSpec, XsltProcess, XsltRunError, shared_process

#: Envelope attributes offered to stylesheets declaring an ``xsl:param`` of the same name.
ENVELOPE_PARAMS = ("id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
                   "correlationid", "causationid", "idempotencykey", "traceparent",
                   "esbendpoint", "esbroute", "esbdestination")
#: Templates, functions and variables nested deeper than this fail the transform (libxslt's
#: xsltMaxDepth; its default too, but the setting is global, so esb states it).
MAX_TEMPLATE_DEPTH = 3000
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_MEMORY = 256 * 1024 * 1024
#: Declared params that may name an extension attribute (CloudEvents names: [a-z0-9]).
_EXTENSION_PARAM = re.compile(r"[a-z0-9]+")
_RECURSION = "infinite template recursion"
_STRIP_SPACE = f"{{{XSL}}}strip-space"
_METHOD_TYPES = {"xml": "application/xml", "text": "text/plain", "html": "text/html",
                 "xhtml": "application/xhtml+xml", "json": "application/json"}

ParamValue = str | int | float | bool


class XsltSettings(TransformerSettings):
    """Options of the ``xslt`` step."""

    #: Path to the stylesheet; a relative path resolves against the folder esb runs in (the
    #: working directory), like every path in the configuration.
    stylesheet: str
    #: Static ``xsl:param`` values (strings are passed as strings, numbers/booleans as such).
    #: They win over envelope attributes and extension attributes of the same name.
    params: dict[str, ParamValue] = Field(default_factory=dict)
    #: Overrides the content type derived from ``xsl:output``.
    content_type: str | None = None
    max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=1, le=LIBXML_MAX_DEPTH)
    #: Largest result in bytes (as serialized); a larger one fails the message.
    max_output: int = Field(DEFAULT_MAX_OUTPUT, gt=0)
    #: Longest one transform may run; past it the transform is stopped and fails.
    timeout: Duration = Field(DEFAULT_TIMEOUT, gt=0)
    #: Memory one transform may use (input tree, result tree, variables) beyond the sandbox
    #: process's own; past it the transform is stopped and fails.
    max_memory: Size = Field(DEFAULT_MAX_MEMORY, ge=16 * 1024 * 1024)
    #: ``process``: run in the sandbox process, bounded by ``timeout`` and ``max_memory``;
    #: ``inline``: run in the daemon itself (faster, unbounded: for stylesheets you trust).
    isolation: Literal["process", "inline"] = "process"


def output_type(sheet: Stylesheet, override: str | None) -> str:
    return override or sheet.media_type or _METHOD_TYPES.get(
        (sheet.output_method or "xml").split(":")[-1], "application/xml")


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


def extension_param(value: Any) -> str | None:
    """An extension attribute's value as a string param; None for a non-scalar value."""
    if isinstance(value, bool):
        return "true" if value else "false"  # the CloudEvents spelling
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float):
        return str(value)
    return None


@dataclass(frozen=True)
class EnvelopeParams:
    """The declared ``xsl:param``s each envelope fills, as strings: those named like an
    envelope attribute (:data:`ENVELOPE_PARAMS`), then those named like an extension attribute
    the envelope carries. A static ``params`` entry of the same name wins over both."""

    attributes: tuple[str, ...]
    extensions: tuple[str, ...]

    @classmethod
    def of(cls, declared: Collection[str], static: Collection[str]) -> EnvelopeParams:
        free = set(declared) - set(static)
        return cls(
            attributes=tuple(p for p in ENVELOPE_PARAMS if p in free),
            extensions=tuple(sorted(p for p in free if p not in ENVELOPE_PARAMS
                                    and _EXTENSION_PARAM.fullmatch(p))))

    @property
    def names(self) -> tuple[str, ...]:
        return self.attributes + self.extensions

    def values(self, env: Envelope) -> dict[str, str]:
        """The params ``env`` has a value for."""
        out = {}
        for name in self.attributes:
            value = envelope_param(env, name)
            if value is not None:
                out[name] = value
        for name in self.extensions:
            value = extension_param(env.extensions.get(name))
            if value is not None:
                out[name] = value
        return out


def result_encoding(sheet: Stylesheet, content_type: str) -> str | None:
    """The ``xsl:output`` encoding a result is carried in as bytes; None: as text (UTF-8, or
    JSON, which is always text)."""
    if is_utf8(sheet.encoding) or is_json(content_type):
        return None
    return sheet.encoding


def with_charset(content_type: str, charset: str) -> str:
    """``content_type`` with its ``charset`` parameter (if any) replaced by ``charset``."""
    media, *params = (part.strip() for part in content_type.split(";"))
    kept = [p for p in params if p and p.split("=", 1)[0].strip().lower() != "charset"]
    return "; ".join([media, *kept, f"charset={charset}"])


def larger_than(out: str | bytes, limit: int) -> bool:
    """Whether ``out`` takes more than ``limit`` bytes (text counted as UTF-8)."""
    if isinstance(out, bytes) or len(out) > limit:
        return len(out) > limit
    if len(out) * 4 <= limit:  # no UTF-8 character takes more than 4 bytes
        return False
    return len(out.encode("utf-8", "surrogatepass")) > limit


def too_large_message(limit: int) -> str:
    return f"output refused: the result is larger than max_output ({limit} bytes)"


def with_result(env: Envelope, step: str, out: str | bytes, content_type: str,
                encoding: str | None, max_output: int) -> Envelope:
    """The envelope carrying a stylesheet's serialized result: text, or the bytes in the
    non-UTF-8 ``encoding`` (see :func:`result_encoding`) with that charset in the content
    type."""
    if larger_than(out, max_output):
        raise TransformError(step, too_large_message(max_output))
    if isinstance(out, str):
        return with_text(env, step, out, content_type)
    return env.model_copy(update={"data": out, "datacontenttype": with_charset(
        content_type, encoding or "UTF-8")})


def apply_error_message(exc: etree.XSLTApplyError) -> str:
    """What a libxslt run-time failure means, for a TransformError."""
    if any(_RECURSION in entry.message for entry in exc.error_log):
        return ("stylesheet failed: templates, functions and variables nest deeper than "
                f"{MAX_TEMPLATE_DEPTH} levels (a runaway recursion?)")
    # The access control's refusals (network reads, any write) read "... rights ...".
    what = "sandbox refused" if " rights " in str(exc) else "stylesheet failed"
    return f"{what}: {exc}"


class XsltTransformer:
    """A compiled stylesheet applied to each envelope's XML payload, in the sandbox process
    (:mod:`esb.transformers.xslt_process`): parsing the input, the transform and serializing
    the result all happen there, bounded by ``timeout`` and ``max_memory``. With
    ``isolation: inline`` it runs here, on the tree parsed from the payload already."""

    def __init__(self, name: str, sheet: Stylesheet, settings: XsltSettings,
                 xml_limits: XmlLimits, xslt: etree.XSLT) -> None:
        #: It waits on the sandbox process (see :attr:`esb.transformers.chain.Chain.waits`).
        self.waits = settings.isolation == "process"
        self.name = name
        self.sheet = sheet
        self.max_output = settings.max_output
        self.timeout = settings.timeout
        self.content_type = output_type(sheet, settings.content_type)
        self.encoding = result_encoding(sheet, self.content_type)
        self.from_envelope = EnvelopeParams.of(sheet.params, settings.params)
        spec = RunSpec(key="", path=str(sheet.path), static=dict(settings.params),
                       max_bytes=settings.max_bytes, max_depth=settings.max_depth,
                       limits=xml_limits, encoding=self.encoding,
                       max_output=settings.max_output, max_memory=settings.max_memory)
        # The key names the stylesheet as compiled here and every option the child applies.
        self.spec = replace(spec, key=f"{sheet.path}#{sheet_digest(sheet)}#{hash(repr(spec))}")
        #: ``isolation: inline``: the stylesheet as compiled when the route loaded, run in
        #: this process (no time or memory bound); else the sandbox process runs it.
        self.inline: etree.XSLT | None = None if self.waits else xslt
        #: libxslt applies ``xsl:strip-space`` to the input document in place: such a
        #: stylesheet gets a tree of its own (the shared one is read by others after it).
        self.changes_input = strips_space(sheet)
        self.process: XsltProcess | None = None
        if self.waits:
            self.process = shared_process()
            self.process.start()

    def __call__(self, env: Envelope) -> Envelope:
        params = self.from_envelope.values(env)
        if self.inline is not None:
            # In this process the tree the inbound edge (or XPath routing) parsed from this
            # payload is read again, not parsed a second time — unless the stylesheet strips
            # space: libxslt then removes whitespace text from the input tree itself.
            spec = self.spec
            doc = xml_root(self.name, env, max_bytes=spec.max_bytes, max_depth=spec.max_depth,
                           limits=spec.limits, shared=not self.changes_input)
            status, out = apply_sheet(self.inline, spec, doc, params)
            if status != "ok":
                raise TransformError(self.name, out)
        else:
            assert self.process is not None
            try:
                out = self.process.run(self.spec, xml_input(self.name, env), params,
                                       self.timeout)
            except XsltRunError as exc:
                raise TransformError(self.name, str(exc)) from None
        return self._result(env, out)

    async def call_async(self, env: Envelope) -> Envelope:
        """The step awaited on the event loop (:meth:`XsltProcess.run_async`): the chain
        calls it for a step that :attr:`waits` (one that runs in the sandbox process)."""
        assert self.process is not None
        data = xml_input(self.name, env)
        try:
            out = await self.process.run_async(self.spec, data, self.from_envelope.values(env),
                                               self.timeout)
        except XsltRunError as exc:
            raise TransformError(self.name, str(exc)) from None
        return self._result(env, out)

    def _result(self, env: Envelope, out: Any) -> Envelope:
        return with_result(env, self.name, out, self.content_type, self.encoding,
                           self.max_output)


def run_sheet(xslt: etree.XSLT, spec: RunSpec, data: str | bytes,
              params: dict[str, str]) -> tuple[str, Any]:
    """Parse ``data``, run ``xslt`` with ``params`` and serialize the result: ("ok", result)
    or ("error", message). Where it runs (the sandbox process or inline) is the caller's
    choice. An allocation failure inside libxslt is raised as MemoryError."""
    try:
        doc = parse_xml(data, max_bytes=spec.max_bytes, max_depth=spec.max_depth,
                        limits=spec.limits)
    except XmlError as exc:
        return "error", f"input refused: {exc}"
    return apply_sheet(xslt, spec, doc, params)


def apply_sheet(xslt: etree.XSLT, spec: RunSpec, doc: etree._Element,
                params: dict[str, str]) -> tuple[str, Any]:
    """:func:`run_sheet` on a document parsed already (changed only by ``xsl:strip-space``,
    see :func:`strips_space`)."""
    values = static_params(spec.static)
    for name, value in params.items():
        values[name] = etree.XSLT.strparam(value)
    try:
        result = xslt(doc, **values)
    except SandboxViolation as exc:
        return "error", f"sandbox refused a read: {exc}"
    except etree.XSLTApplyError as exc:
        if out_of_memory(exc):
            raise MemoryError from None
        return "error", apply_error_message(exc)
    out = str(result) if spec.encoding is None else bytes(result)
    if larger_than(out, spec.max_output):
        return "error", too_large_message(spec.max_output)
    return "ok", out


def strips_space(sheet: Stylesheet) -> bool:
    """Whether ``sheet`` or a module it includes or imports has ``xsl:strip-space``."""
    return any(root.find(_STRIP_SPACE) is not None for root in sheet.modules.values())


def out_of_memory(exc: etree.XSLTApplyError) -> bool:
    """Whether libxslt failed for want of memory."""
    text = " ".join([str(exc), *(e.message for e in exc.error_log)]).lower()
    return "memory" in text or "alloc" in text


def compile_lxml(sheet: Stylesheet) -> etree.XSLT:
    """``sheet`` compiled by libxslt in the sandbox (:data:`ACCESS_CONTROL`), templates nesting
    at most :data:`MAX_TEMPLATE_DEPTH` deep."""
    etree.XSLT.set_global_max_depth(MAX_TEMPLATE_DEPTH)
    return etree.XSLT(sheet.doc, access_control=ACCESS_CONTROL)


def sheet_digest(sheet: Stylesheet) -> str:
    """A digest of the stylesheet and every file it includes or imports, as compiled here."""
    h = hashlib.sha256()
    for key in sorted(sheet.modules):
        h.update(key.encode())
        h.update(etree.tostring(sheet.modules[key]))
    return h.hexdigest()[:16]


def compile_xslt(settings: XsltSettings, ctx: TransformerContext) -> Callable[[Envelope],
                                                                                Envelope]:
    """Factory: load the stylesheet in the sandbox and compile it (lxml or Saxon)."""
    path = ctx.path(settings.stylesheet, "stylesheet")
    sheet = load_stylesheet(path)  # its StylesheetError is a ConfigError
    base = ctx.base_dir.resolve()
    where = str(path.relative_to(base) if path.is_relative_to(base) else path)  # for messages
    if sheet.encoding is not None:
        try:
            codecs.lookup(sheet.encoding)
        except LookupError:
            raise ConfigError([f"{where}: xsl:output encoding {sheet.encoding!r} is not a "
                               "known encoding"]) from None
    unknown = sorted(set(settings.params) - sheet.params)
    if unknown and sheet.version < 2.0:
        raise ConfigError([f"params {unknown} are not declared as xsl:param in {where}"])
    if sheet.version >= 2.0:
        from esb.transformers.saxon import compile_saxon

        return compile_saxon(ctx.name, sheet, settings)
    try:
        xslt = compile_lxml(sheet)
    except SandboxViolation as exc:
        raise ConfigError([f"{where}: {exc}"]) from None
    except etree.XSLTParseError as exc:
        log = "; ".join((f"line {e.line}: " if e.line else "") + e.message
                        for e in exc.error_log) or str(exc)
        raise ConfigError([f"{where} does not compile: {log}"]) from None
    # compiled here to report errors at load time (and run here with isolation: inline)
    return XsltTransformer(ctx.name, sheet, settings, ctx.xml_limits, xslt)


SPEC = TransformerSpec(
    name="xslt",
    summary="Apply an XSLT 1.0 stylesheet (lxml, EXSLT; 2.0/3.0 on Saxon) in a sandbox",
    settings=XsltSettings,
    factory=compile_xslt,
    shorthand="stylesheet",
)
