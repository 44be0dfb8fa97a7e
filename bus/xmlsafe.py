"""The one hardened XML parser every esb component (routing, adapters, transformers) uses for
untrusted XML.

Policy, in order of the checks:

* a body larger than ``max_bytes`` is refused before any parsing (``max_bytes=None`` turns the
  cap off, for callers that bounded the input already or read trusted configuration);
* entities are never expanded, no DTD is loaded, nothing is fetched from the network
  (``resolve_entities=False, load_dtd=False, no_network=True``);
* libxml2's own limits stay on (``huge_tree=False``): nesting is capped at
  :data:`LIBXML_MAX_DEPTH` levels and single text nodes at 10 MB, whatever ``max_depth`` says;
* a document carrying a ``<!DOCTYPE>`` is refused outright: nothing on the bus needs one, and it
  is how entity bombs and external-entity reads arrive;
* nesting deeper than ``max_depth`` is refused (only walked when ``max_depth`` is below
  libxml2's own cap, so the common case costs nothing);
* :class:`XmlLimits` bound what a document may make the parser build: elements, attributes,
  depth, the longest text node and the longest name. Element and attribute counts are
  screened before parsing by counting ``<`` and ``=`` in the bytes (an upper bound; a document
  too short to break them is not even counted); a document the screen cannot clear is read by
  a streaming parser that stops at the first limit passed, so a refused document never costs
  more memory than the limits allow. Text and names are bounded by libxml2 itself at its
  defaults (10,000,000 characters and 50,000 characters); a lower limit is checked once the
  document is read, and only when the document is long enough to break it.

Errors are :class:`UnsafeXml` (the policy said no) or :class:`BadXml` (not well-formed); both are
``ValueError`` subclasses and their messages never quote the document.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: Depth libxml2 enforces without ``huge_tree`` (``xmlParserMaxDepth``); ``max_depth`` above it
#: has no effect.
LIBXML_MAX_DEPTH = 256
DEFAULT_MAX_DEPTH = LIBXML_MAX_DEPTH
#: libxml2's own caps without ``huge_tree`` (XML_MAX_TEXT_LENGTH, XML_MAX_NAME_LENGTH).
LIBXML_MAX_TEXT = 10_000_000
LIBXML_MAX_NAME = 50_000
#: Bytes the streaming parser is fed at a time.
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class XmlLimits:
    """What one document may make the parser build (``limits.xml`` in the configuration).

    Defaults hold a parsed document's memory to a few tens of MiB: an element costs libxml2
    about 130 bytes, an attribute about 250."""

    max_elements: int = 100_000
    max_attributes: int = 100_000
    max_depth: int = DEFAULT_MAX_DEPTH
    max_text: int = LIBXML_MAX_TEXT
    max_name: int = LIBXML_MAX_NAME


DEFAULT_LIMITS = XmlLimits()
_DOCTYPE_MESSAGE = "documents with a DOCTYPE (DTDs, entity declarations) are refused"
# A DOCTYPE can only follow the BOM, the XML declaration, comments, PIs and whitespace; finding
# it there first means libxml2 never reads the internal subset at all.
# One white-space character per repetition and a possessive loop: "(?:\s+)*" backtracks
# exponentially over a run of white space that is not followed by a DOCTYPE (found by fuzzing).
_PROLOG_DOCTYPE = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s|<\?.*?\?>|<!--.*?-->)*+<!DOCTYPE", re.S)


class XmlError(ValueError):
    """Base of the errors :func:`parse_xml` raises."""


class UnsafeXml(XmlError):
    """The document breaks esb's XML policy (size, depth, DOCTYPE)."""


class BadXml(XmlError):
    """The document is not well-formed XML."""


def hardened_parser(*, encoding: str | None = None,
                    resolver: etree.Resolver | None = None) -> etree.XMLParser:
    """A new parser with esb's hardened options (for callers that need their own, e.g. to attach
    a ``resolver``). Parsers are not shared between threads; :func:`parse_xml` keeps one per
    thread.
    """
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        encoding=encoding,
    )
    if resolver is not None:
        parser.resolvers.add(resolver)
    return parser


#: The largest document whose tree :func:`parse_xml` keeps for a next ``shared`` reader
#: (bytes of UTF-8): a tree held stays under ~1 MB (32 KiB of ``<a/>``).
SHARED_MAX_BYTES = 32 * 1024


class _Parsers(threading.local):
    def __init__(self) -> None:
        self.raw = hardened_parser()
        # Text is parsed as UTF-8 whatever its XML declaration claims: it was decoded already.
        self.text = hardened_parser(encoding="utf-8")
        #: The last tree parsed with ``shared=True`` (main thread only: the event loop's):
        #: (the very object parsed, its size in bytes, the limits it passed, its root).
        self.shared: tuple[object, int, tuple[int, XmlLimits], etree._Element] | None = None


_parsers = _Parsers()


def parse_xml(
    data: str | bytes,
    *,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    parser: etree.XMLParser | None = None,
    base_url: str | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
    shared: bool = False,
) -> etree._Element:
    """Parse untrusted XML text or bytes into an lxml root element under esb's policy.

    ``parser`` may be a parser made by :func:`hardened_parser` (with resolvers attached); by
    default a per-thread hardened parser is used. ``max_bytes=None`` means no size cap.
    ``max_depth`` and ``limits.max_depth``: the lower one holds.

    ``shared=True`` is for a caller that only reads the tree (never changes it, nor moves its
    elements into another): the same ``str`` or ``bytes`` object parsed last with
    ``shared=True`` under the same limits gives the same tree again, unparsed. One message's
    payload is read that way on the event loop by the inbound edge (which refuses malformed
    XML), XPath routing and a transform step in turn: parsed once. Only the main thread (the
    event loop's) keeps a tree, one at a time, of a document up to
    :data:`SHARED_MAX_BYTES`; other threads, and mutable data, parse every time.
    """
    policy = (min(max_depth, limits.max_depth), limits)
    if shared and parser is None and base_url is None and type(data) in (str, bytes) \
            and threading.current_thread() is threading.main_thread():
        last = _parsers.shared
        if last is not None and last[0] is data and last[2] == policy:
            if max_bytes is not None and last[1] > max_bytes:
                raise _too_big(max_bytes)
            return last[3]
        root = parse_xml(data, max_bytes=max_bytes, max_depth=max_depth, limits=limits)
        size = len(data)  # (characters: at most the UTF-8 bytes, which are counted below)
        if size <= SHARED_MAX_BYTES and isinstance(data, str) and not data.isascii():
            size = len(data.encode("utf-8"))
        _parsers.shared = (data, size, policy, root) if size <= SHARED_MAX_BYTES else None
        return root
    if isinstance(data, str):
        if max_bytes is not None and len(data) > max_bytes:
            raise _too_big(max_bytes)
        raw = data.encode("utf-8")
        default = _parsers.text
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        default = _parsers.raw
    else:
        raise BadXml(f"expected XML text or bytes, got {type(data).__name__}")
    if max_bytes is not None and len(raw) > max_bytes:
        raise _too_big(max_bytes)
    if not raw.strip():
        raise BadXml("empty document")
    if _PROLOG_DOCTYPE.match(raw):
        raise UnsafeXml(_DOCTYPE_MESSAGE)
    max_depth = min(max_depth, limits.max_depth)
    try:
        if _may_exceed_counts(raw, limits):
            _count(raw, limits, max_depth, isinstance(data, str))
            max_depth = LIBXML_MAX_DEPTH  # walked by the streaming parser already
        chosen = parser or default
        root = etree.fromstring(raw, chosen, base_url=base_url)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    if root is None:
        raise BadXml("no root element")
    _check_namespaces(chosen)
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # e.g. UTF-16, missed by the scan
        raise UnsafeXml(_DOCTYPE_MESSAGE)
    if max_depth < LIBXML_MAX_DEPTH:
        check_depth(root, max_depth)
    if len(raw) > limits.max_text and limits.max_text < LIBXML_MAX_TEXT:
        _check_text(root, limits.max_text)
    if len(raw) > limits.max_name and limits.max_name < LIBXML_MAX_NAME:
        _check_names(root, limits.max_name)
    return root


def _may_exceed_counts(raw: bytes, limits: XmlLimits) -> bool:
    """Whether ``raw`` could hold more elements or attributes than ``limits`` allow (an
    element takes at least 4 bytes, ``<a/>``; an attribute at least 5, `` a=''``)."""
    n = len(raw)
    if n < 4 * limits.max_elements and n < 5 * limits.max_attributes:
        return False
    return (raw.count(b"<") - raw.count(b"</") > limits.max_elements
            or raw.count(b"=") > limits.max_attributes)


def _count(raw: bytes, limits: XmlLimits, max_depth: int, text: bool) -> None:
    """Read ``raw`` with a streaming parser that stops at the first limit passed, dropping each
    element once read (so counting costs little memory whatever the document holds).

    libxml2 builds a start tag whole before anyone sees it, so one tag carrying more
    attributes than the limit is found first, in the bytes: more ``=`` between a ``<`` and the
    next ``<`` than ``max_attributes`` (``<`` cannot occur in an attribute value; ``=`` in the
    text after a tag counts too, which only a document with that many in one text run
    notices)."""
    if _wide_tag(limits.max_attributes).search(raw):
        raise UnsafeXml(f"XML with more than {limits.max_attributes} attributes is refused")
    parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False,
                                 no_network=True, load_dtd=False, huge_tree=False,
                                 encoding="utf-8" if text else None)
    elements = attributes = depth = 0
    for at in range(0, len(raw), _CHUNK):
        parser.feed(raw[at:at + _CHUNK])
        for event, element in parser.read_events():
            if event == "end":
                depth -= 1
                element.clear()
                parent = element.getparent()
                if parent is not None:
                    del parent[:]
                continue
            depth += 1
            elements += 1
            attributes += len(element.attrib)
            if elements > limits.max_elements:
                raise UnsafeXml(f"XML with more than {limits.max_elements} elements is refused")
            if attributes > limits.max_attributes:
                raise UnsafeXml(f"XML with more than {limits.max_attributes} attributes is "
                                "refused")
            if depth > max_depth:
                raise UnsafeXml(f"XML nesting deeper than {max_depth} levels is refused")
    parser.close()


@lru_cache(maxsize=8)
def _wide_tag(max_attributes: int) -> re.Pattern[bytes]:
    return re.compile(rb"<(?:[^<=]*+=){%d}" % (max_attributes + 1))


def _check_text(root: etree._Element, limit: int) -> None:
    for node in root.iter():
        for text in (node.text, node.tail):
            if text is not None and len(text) > limit:
                raise UnsafeXml(f"XML text longer than {limit} characters is refused")
        if isinstance(node.tag, str):
            for value in node.attrib.values():
                if len(value) > limit:
                    raise UnsafeXml(f"XML text longer than {limit} characters is refused")


def _check_namespaces(parser: etree.XMLParser) -> None:
    """Refuse what libxml2 parsed but reported as not namespace-well-formed (a prefix no
    ``xmlns`` binds): it goes on from those errors, and every reader of the tree after it
    (XPath, XSLT, a QName) would meet a "p:name" tag in no namespace."""
    log = parser.error_log
    if not len(log):  # the usual case, on every XML body: nothing reported
        return
    for entry in log.filter_domains(etree.ErrorDomains.NAMESPACE):
        if entry.level >= etree.ErrorLevels.ERROR:
            raise BadXml(f"not namespace-well-formed XML: {entry.message}, line {entry.line}, "
                         f"column {entry.column}")


def _check_names(root: etree._Element, limit: int) -> None:
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        # Not etree.QName: it raises ValueError on the "p:name" tags libxml2 keeps for a
        # prefix no xmlns binds (a namespace error it reports and goes on from).
        names = [node.tag.rpartition("}")[2], *(a.rpartition("}")[2] for a in node.attrib)]
        if any(len(n) > limit for n in names):
            raise UnsafeXml(f"XML names longer than {limit} characters are refused")


def check_depth(root: etree._Element, max_depth: int) -> None:
    """Raise :class:`UnsafeXml` when element nesting under ``root`` exceeds ``max_depth``."""
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise UnsafeXml(f"XML nesting deeper than {max_depth} levels is refused")
        else:
            depth -= 1


def _too_big(max_bytes: int) -> UnsafeXml:
    return UnsafeXml(f"XML body larger than {max_bytes} bytes is refused")


def _syntax_error(exc: etree.XMLSyntaxError) -> XmlError:
    msg = str(exc.msg or exc)
    if "Name too long" in msg or "name too long" in msg:
        return UnsafeXml(f"XML names longer than {LIBXML_MAX_NAME} characters are refused")
    if "Excessive depth" in msg:
        return UnsafeXml(f"XML nesting deeper than {LIBXML_MAX_DEPTH} levels is refused")
    if "entity" in msg.lower() and ("amplification" in msg or "loop" in msg):
        return UnsafeXml(_DOCTYPE_MESSAGE)
    if "huge" in msg.lower():
        return UnsafeXml(f"XML exceeds libxml2's size limits: {msg}")
    return BadXml(f"not well-formed XML: {msg}")
