"""XSLT 2.0/3.0 on Saxon-HE (``saxonche``, the optional extra ``esb[saxon]``).

The sandbox, in layers:

* Saxon never reads a file or URL. Each stylesheet gets its own Saxon processor whose
  ``allowedProtocols`` is ``data`` *before* compiling and empty afterwards. The stylesheet reaches
  Saxon as text, and each ``xsl:include``/``xsl:import`` — vetted by :func:`load_stylesheet`
  (own folder only) — is inlined as a ``data:`` URI, so compiling needs no file access. Anything
  run while compiling (static variables, ``use-when``, shadow attributes) and everything at run
  time (``doc()``, ``document()``, ``unparsed-text()``, ``collection()``, ``json-doc()``,
  external entities in ``parse-xml()``...) is refused, even for the stylesheet's own folder (a
  limitation of this path).
* What ``allowedProtocols`` cannot stop is refused when the route loads: writing files
  (``xsl:result-document``), reading the process environment (``environment-variable()``) or
  Java system properties (``system-property()`` of anything but a literal ``xsl:`` name),
  code the checks never see (``xsl:evaluate``, ``function-lookup()``, ``transform()``,
  ``load-xquery-module()``) and Saxon extensions. Code run at compile time is refused too, so a
  gap in the first layer would not be reachable while compiling either.

Input is vetted by the hardened parser first, so Saxon never sees a DTD. Saxon turns a runaway
recursion into an error by itself (SXLM0001); it has no output limit, so ``max_output`` is
checked on the serialized result.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import structlog
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.bus.payload import is_utf8
from esb.transformers.payload import xml_root
from esb.transformers.stylesheet import (
    XSL,
    Call,
    Stylesheet,
    StylesheetError,
    function_calls,
    string_literal,
)
from esb.transformers.xslt import (
    EnvelopeParams,
    XsltSettings,
    output_type,
    result_encoding,
    with_result,
)

log = structlog.get_logger("esb.transformers.saxon")

ALLOWED_PROTOCOLS = "http://saxon.sf.net/feature/allowedProtocols"
DISABLE_XSL_EVALUATE = "http://saxon.sf.net/feature/disableXslEvaluate"
#: While compiling, Saxon may only dereference ``data:`` URIs: the inlined, vetted modules.
COMPILE_PROTOCOLS = "data"
SAXON_NS = "http://saxon.sf.net/"
FN = "http://www.w3.org/2005/xpath-functions"
EXTRA_HINT = ("XSLT 2.0/3.0 needs the optional extra esb[saxon] "
              "(pip install 'esb[saxon]', i.e. saxonche)")

#: Instructions refused when the route loads, and why.
REFUSED_INSTRUCTIONS = {
    "result-document": "the sandbox forbids writing files",
    "evaluate": "it runs XPath built at run time, which the sandbox cannot check",
}
#: Functions (``fn`` namespace) refused when the route loads, and why.
REFUSED_FUNCTIONS = {
    "environment-variable": "it reads the process environment",
    "available-environment-variables": "it reads the process environment",
    "function-lookup": "it calls functions chosen at run time, which the sandbox cannot check",
    "transform": "it runs a stylesheet the sandbox cannot check",
    "load-xquery-module": "it runs XQuery the sandbox cannot check",
}
#: The encoding in the XML declaration at the very start of a serialized result.
_DECLARED = re.compile(r"""\A(<\?xml[^>]*?\bencoding\s*=\s*["'])[^"']*""")
#: The charset of the ``meta`` element Saxon's HTML output method writes into ``head``.
_META_CHARSET = re.compile(r'(<meta http-equiv="Content-Type" content="[^"]*;\s*charset=)'
                           r"UTF-8\b", re.IGNORECASE)
_SYSTEM_PROPERTY = ("system-property() is only allowed with a literal xsl: property name "
                    "such as 'xsl:version' (other names read Java system properties)")
_COMPILE_TIME = "is evaluated while the stylesheet compiles, which the sandbox does not allow"
_NOT_STATIC = {"no", "false", "0"}


def compile_saxon(name: str, sheet: Stylesheet, settings: XsltSettings
                  ) -> Callable[[Envelope], Envelope]:
    """Compile an XSLT 2.0/3.0 stylesheet on Saxon, or raise ConfigError saying what is missing."""
    try:
        import saxonche
    except ImportError:
        raise ConfigError([f"{sheet.path.name} declares version {sheet.version:g}: {EXTRA_HINT}"]
                          ) from None
    problems = refusals(sheet)
    if problems:
        raise ConfigError(problems)
    proc = saxonche.PySaxonProcessor(license=False)
    proc.set_configuration_property(DISABLE_XSL_EVALUATE, "true")
    proc.set_configuration_property(ALLOWED_PROTOCOLS, COMPILE_PROTOCOLS)
    try:
        executable = _compile(saxonche, proc, sheet)
    finally:
        proc.set_configuration_property(ALLOWED_PROTOCOLS, "")
    return SaxonTransformer(name, sheet, settings, proc, executable)


def _compile(saxonche: Any, proc: Any, sheet: Stylesheet) -> Any:
    """Compile from text, with includes/imports inlined: Saxon opens no file."""
    inliner = _Inliner(sheet)
    text = inliner.text(str(sheet.path), ())  # its StylesheetError is a ConfigError
    builder = proc.new_document_builder()
    builder.set_line_numbering(True)
    builder.set_base_uri(sheet.path.as_uri())  # names the file in Saxon's messages
    with _native_stderr() as captured:
        try:
            node = builder.parse_xml(xml_text=text, encoding="UTF-8")
            return proc.new_xslt30_processor().compile_stylesheet(stylesheet_node=node)
        except saxonche.PySaxonApiError as exc:
            message = inliner.rename(str(exc).strip())
            raise ConfigError([f"{sheet.path.name} does not compile: {message}"]) from None
        finally:
            _log_saxon_output(sheet.path.name, inliner.rename(captured()))  # restored first


@contextlib.contextmanager
def _native_stderr() -> Iterator[Callable[[], str]]:
    """Saxon (native code) writes its error reports to file descriptor 2, past Python's
    logging, its JSON format and its secret redaction. While Saxon runs, descriptor 2 goes to
    a temporary file; the yielded function returns what was written there, for the logger.
    (Anything another thread writes to descriptor 2 meanwhile is logged the same way, not
    lost.)"""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as spool:
        saved = os.dup(2)
        os.dup2(spool.fileno(), 2)
        done = False

        def captured() -> str:
            nonlocal done
            if not done:
                os.dup2(saved, 2)
                done = True
            spool.seek(0)
            return spool.read().decode("utf-8", "replace")

        try:
            yield captured
        finally:
            if not done:
                os.dup2(saved, 2)
            os.close(saved)


def _log_saxon_output(step: str, text: str) -> None:
    """Saxon's own report (error text, warnings) as one log line, through the redaction."""
    text = text.strip()
    if text:
        log.warning("saxon reported", step=step, report=text)


class _Inliner:
    """Serializes modules with each include/import ``href`` replaced by a ``data:`` URI."""

    def __init__(self, sheet: Stylesheet) -> None:
        self.sheet = sheet
        #: data: URI -> module name, to make Saxon's messages readable again.
        self.names: dict[str, str] = {}
        self.done: dict[str, str] = {}  # module -> its text (a module may be linked twice)

    def text(self, key: str, within: tuple[str, ...]) -> str:
        if key in self.done:
            return self.done[key]
        root = copy.deepcopy(self.sheet.modules[key])
        for link in root.iterchildren(f"{{{XSL}}}include", f"{{{XSL}}}import"):
            target = self.sheet.link_target(key, link)
            if target in within or target == key:
                raise StylesheetError([f"{self.sheet.module_name(key)} line {link.sourceline}: "
                                       f"{self.sheet.module_name(target)} includes itself"])
            if target not in self.sheet.modules:  # changed on disk since it was vetted
                raise StylesheetError([f"{self.sheet.module_name(target)} was not inspected"])
            # No "/" in the URI: Saxon names a module by what follows the last one.
            uri = "data:," + quote(self.text(target, (*within, key)), safe="")
            self.names[uri] = self.sheet.module_name(target)
            link.set("href", uri)
        self.done[key] = etree.tostring(root, encoding="unicode")
        return self.done[key]

    def rename(self, message: str) -> str:
        for uri in sorted(self.names, key=len, reverse=True):
            message = message.replace(uri, self.names[uri])
        return message


def refusals(sheet: Stylesheet) -> list[str]:
    """What the sandbox refuses in the stylesheet or its includes/imports (file and line)."""
    own = _own_functions(sheet)
    problems = []
    for key, root in sheet.modules.items():
        where = sheet.module_name(key)
        for el in root.iter(etree.Element):
            at = f"{where} line {el.sourceline}"
            problems += [f"{at}: {why}" for why in _element_refusals(el, own)]
    return problems


def _own_functions(sheet: Stylesheet) -> set[tuple[str, str]]:
    """``(namespace, local name)`` of each ``xsl:function`` the stylesheet defines, outside
    the functions namespace (where a stylesheet may not define any)."""
    found = set()
    for root in sheet.modules.values():
        for el in root.iter(f"{{{XSL}}}function"):
            name = (el.get("name") or "").strip()
            if name.startswith("Q{"):
                uri, _, local = name[2:].partition("}")
            else:
                prefix, _, local = name.rpartition(":")
                uri = (el.nsmap.get(prefix) or "") if prefix else ""
            namespace = " ".join(uri.split())
            if namespace and namespace != FN:
                found.add((namespace, local))
    return found


def _element_refusals(el: etree._Element, own: set[tuple[str, str]]) -> list[str]:
    qname = etree.QName(el)
    problems = []
    if qname.namespace == XSL and qname.localname in REFUSED_INSTRUCTIONS:
        problems.append(f"xsl:{qname.localname} is not allowed "
                        f"({REFUSED_INSTRUCTIONS[qname.localname]})")
    parent = el.getparent()
    if SAXON_NS in el.nsmap.values() and (parent is None or SAXON_NS not in parent.nsmap.values()):
        problems.append(f"Saxon extensions ({SAXON_NS}) are not allowed")
    is_xsl = qname.namespace == XSL
    problems += _compile_time_refusals(el, is_xsl)
    for text in _expressions(el, is_xsl):
        problems += _call_refusals(el, text, own)
    return problems


def _compile_time_refusals(el: etree._Element, is_xsl: bool) -> list[str]:
    """``use-when``, static variables/params and shadow attributes run while compiling."""
    problems = []
    for attr, value in el.attrib.items():
        qname = etree.QName(attr)
        # XSLT attributes: unqualified on XSLT elements, xsl:-qualified on any other element.
        if qname.namespace != (None if is_xsl else XSL):
            continue
        shown = qname.localname if is_xsl else f"xsl:{qname.localname}"
        if qname.localname.startswith("_"):
            problems.append(f"shadow attribute {shown} {_COMPILE_TIME}")
        elif qname.localname == "use-when":
            problems.append(f"{shown} {_COMPILE_TIME}")
        elif (is_xsl and qname.localname == "static"
              and value.strip() not in _NOT_STATIC):
            problems.append(f"static=\"{value}\" {_COMPILE_TIME}")
    return problems


def _expressions(el: etree._Element, is_xsl: bool) -> list[str]:
    """Text that may hold XPath, taken generously so that nothing is missed.

    Attributes of XSLT elements and ``xsl:`` attributes whole; other attributes (attribute value
    templates) and text under ``expand-text`` from their first ``{`` to their last ``}``.
    """
    texts = []
    for attr, value in el.attrib.items():
        whole = is_xsl or etree.QName(attr).namespace == XSL
        texts.append(value if whole else _braced(value))
    if _expands_text(el):
        texts += [_braced(el.text or "")] + [_braced(child.tail or "") for child in el]
    return texts


def _braced(text: str) -> str:
    start = text.find("{")
    return text[start:text.rfind("}") + 1] if start >= 0 else ""


def _expands_text(el: etree._Element | None) -> bool:
    while el is not None:
        own = "expand-text" if etree.QName(el).namespace == XSL else f"{{{XSL}}}expand-text"
        value = el.get(own)
        if value is not None:
            return value.strip() in {"yes", "true", "1"}
        el = el.getparent()
    return False


def _call_refusals(el: etree._Element, text: str, own: set[tuple[str, str]]) -> list[str]:
    """Refused calls in ``text``. A refused function is refused by its local name in any
    namespace: XPath normalizes the whitespace of a ``Q{...}`` URI (and a namespace can be
    bound under any prefix), so comparing namespaces exactly could be fooled, and a false
    alarm on a same-named function of one's own is the cheaper mistake. The one exception is
    a call to an ``xsl:function`` of the stylesheet's own (``own``): that namespace is never
    the functions namespace, so the call cannot reach a refused function."""
    problems = []
    for call in function_calls(text):
        namespace = call.uri if call.uri is not None else (
            el.nsmap.get(call.prefix) if call.prefix else FN)
        namespace = " ".join((namespace or "").split())
        name = f"{call.prefix}:{call.local}" if call.prefix else call.local
        if namespace.startswith(SAXON_NS):
            problems.append(f"Saxon extension function {name}() is not allowed")
        elif (namespace, call.local) in own:
            continue
        elif call.local in REFUSED_FUNCTIONS:
            problems.append(f"{name}() is not allowed ({REFUSED_FUNCTIONS[call.local]})")
        elif call.local == "system-property" and not _xsl_property(el, call):
            problems.append(_SYSTEM_PROPERTY.replace("system-property", name, 1))
    return problems


def _xsl_property(el: etree._Element, call: Call) -> bool:
    """Whether ``call`` asks for a property in the XSLT namespace, named by a literal."""
    args = call.arguments()
    literal = string_literal(args[0]) if args is not None and len(args) == 1 else None
    if literal is None:
        return False
    name = literal.strip()
    if name.startswith("Q{"):
        uri, _, local = name[2:].partition("}")
        return " ".join(uri.split()) == XSL and bool(local)
    prefix, colon, local = name.partition(":")
    return bool(colon and local) and el.nsmap.get(prefix) == XSL


class SaxonTransformer:
    """A compiled Saxon stylesheet; calls are serialized (one Saxon executable, shared state)."""

    def __init__(self, name: str, sheet: Stylesheet, settings: XsltSettings, proc: Any,
                 executable: Any) -> None:
        self.name = name
        self.proc = proc
        self.executable = executable
        self.settings = settings
        self.content_type = output_type(sheet, settings.content_type)
        self.encoding = result_encoding(sheet, self.content_type)
        self.method = (sheet.output_method or "xml").split(":")[-1]
        if not is_utf8(sheet.encoding):
            # saxonche decodes every result as UTF-8; _encode applies the declared encoding.
            executable.set_property("!encoding", "UTF-8")
        self.from_envelope = EnvelopeParams.of(sheet.params, settings.params)
        self.lock = threading.Lock()
        #: Envelope params currently set on the executable (removing an unset one fails).
        self.set_params: set[str] = set()
        for key, value in settings.params.items():
            executable.set_parameter(key, self._value(value))
        # xsl:message output is kept for the logger (:meth:`_messages`), not written raw
        executable.set_save_xsl_message(True, None)

    def _value(self, value: Any) -> Any:
        if isinstance(value, bool):
            return self.proc.make_boolean_value(value)
        if isinstance(value, int):
            return self.proc.make_integer_value(value)
        if isinstance(value, float):
            return self.proc.make_double_value(value)
        return self.proc.make_string_value(str(value))

    def __call__(self, env: Envelope) -> Envelope:
        root = xml_root(self.name, env, max_bytes=self.settings.max_bytes,
                        max_depth=self.settings.max_depth)
        text = etree.tostring(root, encoding="unicode")
        values = self.from_envelope.values(env)
        with self.lock, _native_stderr() as captured:
            try:
                self._set_envelope_params(values)
                node = self.proc.parse_xml(xml_text=text)
                result = self.executable.transform_to_string(xdm_node=node) or ""
                # text for UTF-8, else the bytes in the declared encoding
                out = result if self.encoding is None else self._encode(result)
            except TransformError:
                raise
            except Exception as exc:  # saxonche raises PySaxonApiError and plain exceptions
                raise self._failure(exc) from None
            finally:
                report = captured()  # (descriptor 2 is back: log lines go to stderr again)
                for message in self._take_messages():
                    log.info("xsl:message", step=self.name, message=message)
                _log_saxon_output(self.name, report)
        return with_result(env, self.name, out, self.content_type, self.encoding,
                           self.settings.max_output)

    def _take_messages(self) -> list[str]:
        """The ``xsl:message`` texts of the current call (then forgotten)."""
        saved = self.executable.get_xsl_messages()
        if saved is None:
            return []
        self.executable.clear_xsl_messages()
        return [str(item.string_value).strip() for item in saved]

    def _failure(self, exc: Exception) -> TransformError:
        """The step's error; ``xsl:message terminate="yes"`` gives its message as the reason
        (the message is still logged)."""
        error = str(exc).strip()
        if "terminated by xsl:message" in error:
            saved = self.executable.get_xsl_messages()
            if saved is not None and saved.size:
                error = ("xsl:message terminated the transform: "
                         f"{str(saved.item_at(saved.size - 1).string_value).strip()}")
        return TransformError(self.name, f"stylesheet failed: {error}")

    def _set_envelope_params(self, values: dict[str, str]) -> None:
        for param in self.from_envelope.names:
            if param in values:
                self.executable.set_parameter(param, self.proc.make_string_value(values[param]))
                self.set_params.add(param)
            elif param in self.set_params:  # the xsl:param's default applies again
                self.executable.remove_parameter(param)
                self.set_params.discard(param)

    def _encode(self, text: str) -> bytes:
        """Saxon's UTF-8 serialization (saxonche returns no other) in the declared encoding.

        The XML declaration and the ``meta`` charset Saxon writes are made to name it; a
        character it cannot hold becomes a character reference, except in text output, where
        it is an error (as Saxon itself has it).
        """
        encoding = self.encoding or "UTF-8"
        if self.method != "text":
            text = _DECLARED.sub(lambda m: m[1] + encoding, text, count=1)
            text = _META_CHARSET.sub(lambda m: m[1] + encoding, text, count=1)
        try:
            return text.encode(encoding, "strict" if self.method == "text"
                               else "xmlcharrefreplace")
        except UnicodeEncodeError as exc:
            char = exc.object[exc.start]
            raise TransformError(self.name, f"stylesheet failed: output character {char!r} "
                                            f"(U+{ord(char):04X}) is not available in "
                                            f"{encoding}") from None
