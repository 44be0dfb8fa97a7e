"""Which JSON Schema a source's requests are validated against, read from a route set.

A route validates what it takes with a ``json-schema`` step in its own chain (``transform:``,
run before fan-out). Such a route tells a caller of each source it takes envelopes from
(``from:``, all sources when absent) what the body must look like, for each envelope type it
matches exactly (``match: {type: [a, b]}``; a route without a condition on the type covers
every type, key ``None``). Named definitions (``transformers:`` in esb.yaml) are followed.

The schema is embedded in the OpenAPI document, so its internal references (``#/$defs/x``)
are rewritten to point where it will sit (``#/components/schemas/<name>/$defs/x``) by
:func:`relocate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from esb.bus.routing.model import Route
from esb.bus.routing.routeset import parse_route_files

#: A schema file larger than this is not embedded (the document stays readable).
MAX_SCHEMA_BYTES = 1024 * 1024
_STEP = "json-schema"


def request_schemas(files: Mapping[str, str], source: str, *, base_dir: Path,
                    named: Mapping[str, Any]) -> dict[str | None, dict[str, Any]]:
    """Envelope type (``None``: any) → the request schema routes taking ``source``'s envelopes
    validate with. When several routes validate one type, the first in firing order wins."""
    out: dict[str | None, dict[str, Any]] = {}
    for route in _taking(files, source):
        schema = next(_schemas(route.transform, base_dir, named, ()), None)
        if schema is None:
            continue
        for etype in _exact_types(route.match):
            out.setdefault(etype, schema)
    return out


def reply_schemas(files: Mapping[str, str], source: str, *, base_dir: Path,
                  named: Mapping[str, Any]) -> dict[str | None, dict[str, Any]]:
    """Envelope type (``None``: any) → what request/reply routes taking ``source``'s envelopes
    answer the caller with: the schema of the last ``json-schema`` step of the route's reply
    leg, or ``{}`` (any JSON value) when the reply leg validates nothing."""
    out: dict[str | None, dict[str, Any]] = {}
    for route in _taking(files, source):
        if route.reply is None:
            continue
        found = list(_schemas(route.reply.transform, base_dir, named, ()))
        for etype in _exact_types(route.match):
            out.setdefault(etype, found[-1] if found else {})
    return out


def _taking(files: Mapping[str, str], source: str) -> Iterator[Route]:
    """The routes that take ``source``'s envelopes, in firing order (priority, then file
    order)."""
    routes = sorted(parse_route_files(dict(files)).routes,
                    key=lambda placed: -placed.route.priority)
    return (p.route for p in routes if p.route.from_ is None or source in p.route.from_)


def _exact_types(match: Mapping[str, Any]) -> list[str | None]:
    """The envelope types a pattern takes exactly; ``[None]`` when it does not constrain the
    type to exact values (any type, as far as a caller can tell)."""
    wanted = match.get("type")
    if wanted is None:
        return [None]
    values = wanted if isinstance(wanted, list) else [wanted]
    exact = [v for v in values if isinstance(v, str)]
    return list(dict.fromkeys(exact)) if len(exact) == len(values) else [None]


def _schemas(steps: Any, base_dir: Path, named: Mapping[str, Any],
             seen: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Every ``json-schema`` step's schema in ``steps``, in order (unreadable ones skipped:
    a deployed route set has loaded them already, so that is a file changed since)."""
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence):
        steps = [steps]
    for step in steps:
        if isinstance(step, str) and step in named and step not in seen:
            yield from _schemas(named[step], base_dir, named, (*seen, step))
        elif isinstance(step, Mapping) and len(step) == 1 and _STEP in step:
            options = step[_STEP]
            given = options.get("schema") if isinstance(options, Mapping) else options
            schema = _load(given, base_dir)
            if schema is not None:
                yield schema


def _load(given: Any, base_dir: Path) -> dict[str, Any] | None:
    if isinstance(given, Mapping):
        return dict(given)
    if not isinstance(given, str):
        return None
    path = (base_dir / given).resolve()
    try:
        if path.stat().st_size > MAX_SCHEMA_BYTES:
            return None
        loaded = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return loaded if isinstance(loaded, dict) else None


def relocate(schema: Any, pointer: str) -> Any:
    """``schema`` with every document-internal reference (``$ref``/``$dynamicRef`` starting
    with ``#``) rebased under ``pointer`` (e.g. ``#/components/schemas/shop.order``)."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str) \
                    and value.startswith("#"):
                out[key] = pointer + value[1:]
            else:
                out[key] = relocate(value, pointer)
        return out
    if isinstance(schema, list):
        return [relocate(v, pointer) for v in schema]
    return schema
