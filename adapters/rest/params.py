"""Path and query parameters of a REST request, as envelope data (request/reply facades).

``path: /api/customers/{id}`` names path parameters; ``params: {id: integer}`` types them (and
any query parameter): ``string`` (default), ``integer``, ``number`` or ``boolean``. A value
that does not fit its type, a query string that is not valid percent-encoded UTF-8, or more
than :data:`MAX_QUERY_FIELDS` query fields is refused (:class:`ParamError`, a 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl

ParamType = Literal["string", "integer", "number", "boolean"]

#: Query fields read at most (more is a 400, not a bigger dict).
MAX_QUERY_FIELDS = 100
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


class ParamError(ValueError):
    """A parameter the request cannot be taken with (answered 400)."""


def path_names(path: str) -> list[str]:
    """The parameter names of a path template, in order."""
    return _PARAM.findall(path)


def query_params(query: bytes | str) -> dict[str, str | list[str]]:
    """The query string as a dict; a repeated name gives a list of its values."""
    raw = query.decode("latin-1") if isinstance(query, bytes) else query
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict",
                          max_num_fields=MAX_QUERY_FIELDS)
    except UnicodeDecodeError:
        raise ParamError("the query string is not valid percent-encoded UTF-8") from None
    except ValueError as exc:
        raise ParamError(f"the query string is malformed: {exc}") from None
    out: dict[str, str | list[str]] = {}
    for name, value in pairs:
        if name in out:
            prior = out[name]
            out[name] = [*prior, value] if isinstance(prior, list) else [prior, value]
        else:
            out[name] = value
    return out


def typed(values: Mapping[str, Any], types: Mapping[str, ParamType],
          where: str) -> dict[str, Any]:
    """``values`` with each typed parameter converted; ``where`` is ``path`` or ``query``."""
    out = dict(values)
    for name, kind in types.items():
        if name not in out or kind == "string":
            continue
        value = out[name]
        out[name] = [_convert(name, v, kind, where) for v in value] \
            if isinstance(value, list) else _convert(name, value, kind, where)
    return out


def _convert(name: str, value: str, kind: ParamType, where: str) -> Any:
    try:
        if kind == "integer":
            if not _INTEGER.match(value):
                raise ValueError(value)
            return int(value)
        if kind == "number":
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(value)
            return number
        low = value.lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:39] + "…"
        raise ParamError(f"{where} parameter {name!r} must be {_ARTICLE[kind]} {kind}, "
                         f"got {shown!r}") from None


_ARTICLE = {"integer": "an", "number": "a", "boolean": "a"}
