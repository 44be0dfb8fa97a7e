"""How deep a JSON value may nest (``limits.json.max_depth``).

orjson refuses nesting past 1024 levels by itself, but a value 1,000 levels deep still breaks
every recursive walk downstream (route matching, JSON→XML, schema validation) with a
RecursionError. :func:`check_json_depth` refuses it at the edge. It costs nothing for a body
with fewer ``{`` and ``[`` than the limit (nearly every message), and one walk otherwise.
"""

from __future__ import annotations

from typing import Any

import orjson

#: Default deepest nesting (an object or array at the top is level 1).
DEFAULT_JSON_DEPTH = 64
#: The highest limit that can be configured (orjson's own cap is 1024).
MAX_JSON_DEPTH = 512


class JsonTooDeep(ValueError):
    """The value nests deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nesting deeper than {max_depth} levels is refused")


def check_json_depth(value: Any, max_depth: int = DEFAULT_JSON_DEPTH,
                     raw: bytes | str | None = None) -> None:
    """Raise :class:`JsonTooDeep` when ``value`` (parsed from ``raw``, when given) nests deeper
    than ``max_depth``."""
    if raw is not None:
        opened = raw.count(b"{") + raw.count(b"[") if isinstance(raw, bytes) \
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
