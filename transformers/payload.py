"""What a built-in transformer step needs from a payload: its data in the form the step works
on (or an error naming the fix), and its result handed back in an envelope. What bytes and
content types mean is :mod:`esb.bus.payload`'s."""

from __future__ import annotations

from typing import Any

import orjson
from lxml import etree

from esb.bus.envelope import Envelope
from esb.bus.errors import TransformError
from esb.bus.payload import JSON, is_json
from esb.bus.xmlsafe import DEFAULT_LIMITS, XmlError, XmlLimits, parse_xml


def xml_input(step: str, env: Envelope) -> str | bytes:
    """The envelope's payload if it can be XML, else a TransformError naming the fix."""
    data = env.data
    explicit_json = env.datacontenttype is not None and env.is_json
    if isinstance(data, bytes) or (isinstance(data, str) and not explicit_json):
        return data
    raise TransformError(step, f"{step} needs an XML payload; add json-to-xml before it")


def xml_root(step: str, env: Envelope, *, max_bytes: int, max_depth: int,
             limits: XmlLimits = DEFAULT_LIMITS, shared: bool = True) -> etree._Element:
    """The envelope's XML payload (:func:`xml_input`) parsed under esb's policy; input the
    parser refuses (too large, too deep, not well-formed) is a TransformError saying so.
    The tree is to be read, not changed: it may be the one the inbound edge or XPath routing
    parsed from this payload already (``parse_xml``'s ``shared``). ``shared=False``: a tree
    of the caller's own, parsed anew, which it may change."""
    try:
        return parse_xml(xml_input(step, env), max_bytes=max_bytes, max_depth=max_depth,
                         limits=limits, shared=shared)
    except XmlError as exc:
        raise TransformError(step, f"input refused: {exc}") from None


def json_input(step: str, env: Envelope) -> Any:
    """The envelope's payload as a JSON value, else a TransformError naming the fix."""
    if env.is_json:
        if isinstance(env.data, bytes):
            try:
                return orjson.loads(env.data)
            except orjson.JSONDecodeError as exc:
                raise TransformError(step, f"payload is not valid JSON: {exc}") from None
        return env.data
    hint = "; add xml-to-json before it" if env.is_xml else ""
    raise TransformError(
        step, f"{step} needs a JSON payload, got {env.datacontenttype or 'none'}{hint}")


def with_text(env: Envelope, step: str, text: str, content_type: str) -> Envelope:
    """The envelope carrying serialized ``text`` in ``content_type`` (parsed if JSON)."""
    data: Any = text
    if is_json(content_type):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise TransformError(step, f"output is not valid JSON: {exc}") from None
    return env.model_copy(update={"data": data, "datacontenttype": content_type})


def with_json(env: Envelope, value: Any) -> Envelope:
    """The envelope carrying the JSON ``value``."""
    return env.model_copy(update={"data": value, "datacontenttype": JSON})
