"""XSLT 2.0/3.0 on Saxon-HE (``saxonche``, the optional extra ``esb[saxon]``).

Sandbox: includes/imports were vetted by :func:`load_stylesheet` (own folder only); each
stylesheet gets its own Saxon processor whose ``allowedProtocols`` is emptied right after
compiling, so ``doc()``, ``document()``, ``unparsed-text()``, ``collection()`` ... fail at run time
(even for the stylesheet's own folder: a limitation of this path). ``xsl:result-document`` and
Saxon extensions are refused at compile time because Saxon writes files regardless of
``allowedProtocols``. Input is vetted by the hardened parser first, so Saxon never sees a DTD.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.bus.xmlsafe import XmlError, parse_xml
from esb.transformers.payload import with_text, xml_input
from esb.transformers.stylesheet import XSL, Stylesheet

if TYPE_CHECKING:
    from esb.transformers.xslt import XsltSettings

ALLOWED_PROTOCOLS = "http://saxon.sf.net/feature/allowedProtocols"
SAXON_NS = "http://saxon.sf.net/"
EXTRA_HINT = ("XSLT 2.0/3.0 needs the optional extra esb[saxon] "
              "(pip install 'esb[saxon]', i.e. saxonche)")


def _refusals(sheet: Stylesheet) -> list[str]:
    problems = []
    for root in sheet.roots:
        name = root.base.rsplit("/", 1)[-1] if root.base else sheet.path.name
        for el in root.iter(f"{{{XSL}}}result-document"):
            problems.append(f"{name} line {el.sourceline}: xsl:result-document is not allowed "
                            "(the sandbox forbids writing files)")
        if any(uri == SAXON_NS for el in root.iter() for uri in el.nsmap.values()):
            problems.append(f"{name}: Saxon extensions ({SAXON_NS}) are not allowed")
    return problems


def compile_saxon(name: str, sheet: Stylesheet, settings: XsltSettings
                  ) -> Callable[[Envelope], Envelope]:
    """Compile an XSLT 2.0/3.0 stylesheet on Saxon, or raise ConfigError saying what is missing."""
    try:
        import saxonche
    except ImportError:
        raise ConfigError([f"{sheet.path.name} declares version {sheet.version:g}: {EXTRA_HINT}"]
                          ) from None
    problems = _refusals(sheet)
    if problems:
        raise ConfigError(problems)
    proc = saxonche.PySaxonProcessor(license=False)
    try:
        executable = proc.new_xslt30_processor().compile_stylesheet(
            stylesheet_file=str(sheet.path))
    except saxonche.PySaxonApiError as exc:
        raise ConfigError([f"{sheet.path.name} does not compile: {exc}"]) from None
    proc.set_configuration_property(ALLOWED_PROTOCOLS, "")
    return SaxonTransformer(name, sheet, settings, proc, executable)


class SaxonTransformer:
    """A compiled Saxon stylesheet; calls are serialized (one Saxon executable, shared state)."""

    def __init__(self, name: str, sheet: Stylesheet, settings: XsltSettings, proc: Any,
                 executable: Any) -> None:
        from esb.transformers.xslt import ENVELOPE_PARAMS, output_type

        self.name = name
        self.proc = proc
        self.executable = executable
        self.settings = settings
        self.content_type = output_type(sheet, settings.content_type)
        self.from_envelope = tuple(p for p in ENVELOPE_PARAMS
                                   if p in sheet.params and p not in settings.params)
        self.lock = threading.Lock()
        for key, value in settings.params.items():
            executable.set_parameter(key, self._value(value))

    def _value(self, value: Any) -> Any:
        if isinstance(value, bool):
            return self.proc.make_boolean_value(value)
        if isinstance(value, int):
            return self.proc.make_integer_value(value)
        if isinstance(value, float):
            return self.proc.make_double_value(value)
        return self.proc.make_string_value(str(value))

    def __call__(self, env: Envelope) -> Envelope:
        from esb.transformers.xslt import envelope_param

        data = xml_input(self.name, env)
        try:
            root = parse_xml(data, max_bytes=self.settings.max_bytes,
                             max_depth=self.settings.max_depth)
        except XmlError as exc:
            raise TransformError(self.name, f"input refused: {exc}") from None
        text = etree.tostring(root, encoding="unicode")
        with self.lock:
            try:
                for attr in self.from_envelope:
                    value = envelope_param(env, attr)
                    if value is None:
                        self.executable.remove_parameter(attr)
                    else:
                        self.executable.set_parameter(attr, self.proc.make_string_value(value))
                node = self.proc.parse_xml(xml_text=text)
                out = self.executable.transform_to_string(xdm_node=node)
            except Exception as exc:  # saxonche raises PySaxonApiError and plain exceptions
                raise TransformError(self.name, f"stylesheet failed: {exc}") from None
        return with_text(env, self.name, out or "", self.content_type)
