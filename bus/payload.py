"""One reading of a payload: what bytes with a content type mean, which kind a content type is,
what type a file holds, and what a dotted field path names in an envelope.

Every adapter, the command line and the transformers read payloads through here, so the same
bytes mean the same thing everywhere. The rules (docs/adapters.md, "Payloads"):

* **JSON** — ``application/json`` and any ``+json`` type: parsed into a JSON value (any
  ``charset`` parameter is ignored: JSON is UTF-8). Bytes that do not parse are a
  :class:`PayloadError` ("Malformed JSON"); a value nesting deeper than the limit
  (``limits.json.max_depth``, :func:`check_json_depth`) is one too ("JSON too deep").
* **XML** — ``application/xml``, ``text/xml``, any ``+xml`` type: text when it is UTF-8 (or the
  ``charset`` says UTF-8/ASCII); without a ``charset``, bytes that are not UTF-8 are kept as the
  bytes they came in (the XML declaration names their encoding; never re-encoded). A ``charset``
  of UTF-8 on bytes that are not is a :class:`PayloadError` ("Bad encoding").
* **Text** — other ``text/*`` types: text when the ``charset`` is UTF-8/ASCII or absent (not
  UTF-8: "Bad encoding"); any other ``charset`` keeps the bytes unchanged, so what is delivered
  is still in the encoding its content type names.
* anything else — and bytes with no content type at all — stays bytes. (An envelope whose
  ``datacontenttype`` is absent carries JSON, the CloudEvents default: :func:`is_json`.)

A field path is ``attribute`` or ``attribute.key.key…`` (a leading ``$`` is allowed): the
attribute is a CloudEvents attribute of the envelope (``id``, ``type``, ``subject``, ``data``,
``esbroute`` …), ``key`` (the idempotency key, else the id) or an extension attribute; each
further step is a key of a mapping or, on a list, an index (``items.0.sku``).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from esb.bus.errors import PermanentError

if TYPE_CHECKING:
    from esb.bus.envelope import Envelope

JSON = "application/json"
XML = "application/xml"
TEXT = "text/plain"
OCTETS = "application/octet-stream"

_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
#: A file's content type by its suffix (:func:`guess_content_type`).
_BY_SUFFIX = {".json": JSON, ".txt": TEXT, ".csv": "text/csv",
              **dict.fromkeys((".xml", ".soap", ".wsdl", ".xsd", ".xsl", ".xslt"), XML)}
#: Envelope fields a path may not start with (esb's own history, and the extension bag).
_NOT_ATTRIBUTES = frozenset({"esbhops", "esbattempts", "extensions"})


#: Default deepest nesting (an object or array at the top is level 1).
DEFAULT_JSON_DEPTH = 64
#: The highest limit that can be configured (orjson's own cap is 1024).
MAX_JSON_DEPTH = 512


#: Every byte but ``{`` and ``[`` (:func:`check_json_depth` deletes them to count the openers).
_NOT_OPENERS = bytes(b for b in range(256) if b not in b"{[")


class JsonTooDeep(ValueError):
    """The value nests deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nesting deeper than {max_depth} levels is refused")


def check_json_depth(value: Any, max_depth: int = DEFAULT_JSON_DEPTH,
                     raw: bytes | str | None = None) -> None:
    """Raise :class:`JsonTooDeep` when ``value`` (parsed from ``raw``, when given) nests deeper
    than ``max_depth``."""
    if raw is not None:
        # The openers bound the depth: one C pass that keeps only them (half the cost of two
        # ``count`` passes over a 10 KiB body).
        opened = len(raw.translate(None, _NOT_OPENERS)) if isinstance(raw, bytes) \
            else raw.count("{") + raw.count("[")
        if opened <= max_depth:
            return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JsonTooDeep(max_depth)
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


def loads_json(raw: bytes | str, max_depth: int = DEFAULT_JSON_DEPTH) -> Any:
    """``orjson.loads`` then :func:`check_json_depth`: raises ``orjson.JSONDecodeError`` or
    :class:`JsonTooDeep` (both ``ValueError``)."""
    value = orjson.loads(raw)
    check_json_depth(value, max_depth, raw)
    return value


class PayloadError(ValueError):
    """Bytes that do not mean what their content type says; ``title`` is the short kind."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail


# -- content types -------------------------------------------------------------------------------

def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """A Content-Type split into its lower-cased media type and its parameters (names
    lower-cased, values unquoted): ``'text/xml; Charset="UTF-8"'`` →
    ``("text/xml", {"charset": "UTF-8"})``."""
    media, _, rest = (content_type or "").partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, _, val = part.partition("=")
        key = key.strip().lower()
        if key:
            params[key] = val.strip().strip('"')
    return media.strip().lower(), params


def is_json(content_type: str | None) -> bool:
    """JSON: ``application/json``, ``+json``, or no content type (the CloudEvents default)."""
    if content_type is None:
        return True
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == JSON or ct.endswith("+json")


def is_xml(content_type: str | None) -> bool:
    """XML: ``application/xml``, ``text/xml`` or ``+xml``."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    return ct in (XML, "text/xml") or ct.endswith("+xml")


# -- bytes → data --------------------------------------------------------------------------------

def is_utf8(encoding: str | None) -> bool:
    """True for no declared encoding or any spelling of UTF-8 (an unknown name is not)."""
    if encoding is None:
        return True
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


_DECLARED_ENCODING = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([^\"']*)[\"']")


def declares_other_than_utf8(raw: bytes) -> bool:
    """Whether ``raw``'s XML declaration names an encoding other than UTF-8: then the same
    document decoded as UTF-8 text is not what a reader of the bytes gets."""
    found = _DECLARED_ENCODING.match(raw)
    return found is not None and not is_utf8(found.group(1).decode("ascii", "replace"))


def decode(body: bytes, content_type: str | None, *,
           json_depth: int = DEFAULT_JSON_DEPTH) -> Any:
    """``body`` as envelope data under ``content_type`` (the rules above); PayloadError when
    the bytes are not what the content type says, or JSON nests deeper than ``json_depth``
    ("JSON too deep", ``limits.json.max_depth``). Bytes with no content type are unknown:
    kept as they are."""
    if not content_type:
        return body
    if is_json(content_type):
        try:
            return loads_json(body, json_depth)
        except JsonTooDeep as exc:
            raise PayloadError("JSON too deep", str(exc)) from None
        except orjson.JSONDecodeError as exc:
            raise PayloadError("Malformed JSON", f"the body is not valid JSON: {exc}") from None
    media, params = media_type(content_type)
    xml = is_xml(media)
    if not (xml or media.startswith("text/")):
        return body
    charset = params.get("charset")
    if charset is None and xml:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body
    if (charset or "utf-8").lower() in _UTF8:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("Bad encoding", "the body is not valid UTF-8") from None
    return body


def guess_content_type(name: str, body: bytes) -> str:
    """A file's content type: from its suffix (``.json``; ``.xml``/``.soap``/``.wsdl``/
    ``.xsd``/``.xsl``/``.xslt``; ``.txt``; ``.csv``), else from its first non-blank byte
    (``{``/``[`` and it parses: JSON; ``<``: XML), else text when it is UTF-8, else bytes."""
    by_suffix = _BY_SUFFIX.get(Path(name).suffix.lower())
    if by_suffix is not None:
        return by_suffix
    first = body.lstrip()[:1]
    if first in (b"{", b"["):
        try:
            orjson.loads(body)
            return JSON
        except orjson.JSONDecodeError:
            pass
    if first == b"<":
        return XML
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return OCTETS
    return TEXT


def read_file(path: Path, content_type: str | None = None) -> tuple[str, Any]:
    """A file's content type (given, else guessed) and its content as envelope data."""
    body = path.read_bytes()
    ctype = content_type or guess_content_type(path.name, body)
    return ctype, decode(body, ctype)


# -- field paths ---------------------------------------------------------------------------------

#: What :func:`field` returns for a path that leads nowhere.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING",
                                    "__bool__": lambda self: False})()


def field(envelope: Envelope, path: str) -> Any:
    """The value ``path`` names in ``envelope`` (the rules above), or :data:`MISSING`."""
    head, _, rest = path.removeprefix("$").partition(".")
    if head == "key":
        value: Any = envelope.key
    elif head in type(envelope).model_fields and head not in _NOT_ATTRIBUTES:
        value = getattr(envelope, head)
    elif head in envelope.extensions:
        value = envelope.extensions[head]
    else:
        return MISSING
    return lookup(value, rest) if rest else value


def lookup(value: Any, path: str) -> Any:
    """The value a dotted ``path`` names inside a JSON ``value`` (mapping keys; list indexes),
    or :data:`MISSING`."""
    for step in path.split("."):
        if isinstance(value, Mapping):
            if step not in value:
                return MISSING
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return MISSING
    return value


def scalar(value: Any) -> str | None:
    """A field's value as text for a template (URL, routing key, ordering key): ``None`` when
    it is missing, null, or an object or list (which have no one text form)."""
    if value is MISSING or value is None or isinstance(value, Mapping | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: A ``{path}`` placeholder in a template (a URL, a routing key).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def render(template: str, envelope: Envelope, what: str,
           escape: Callable[[str], str] = str) -> str:
    """``template`` with each ``{path}`` replaced by that field's text (:func:`field`,
    :func:`scalar`) passed through ``escape``. A field that is missing, or is an object or a
    list, is a PermanentError naming ``what`` (the template's role, e.g. "URL template")."""

    def value(m: re.Match[str]) -> str:
        text = scalar(field(envelope, m.group(1)))
        if text is None:
            raise PermanentError(f"{what} field {{{m.group(1)}}} is missing from the "
                                 "envelope (or is an object or a list)")
        return escape(text)

    return PLACEHOLDER.sub(value, template)
