"""Outbound variables: names mapped to paths into the envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esb.bus.envelope import Envelope


def resolve_path(envelope: Envelope, path: str) -> tuple[bool, Any]:
    """``(found, value)`` for ``data.a.b`` / ``$data`` / ``id`` / ``subject`` ..."""
    head, *rest = path.removeprefix("$").split(".")
    if head not in Envelope.model_fields or head in ("extensions", "esbhops", "esbattempts"):
        return False, None
    value: Any = getattr(envelope, head)
    for step in rest:
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return False, None
    return True, value


def build_variables(envelope: Envelope, mapping: Mapping[str, str]) -> dict[str, Any]:
    """The request's ``variables``; paths that lead nowhere are left out (the server then
    applies the variable's default, or rejects a required one)."""
    if not mapping:
        return dict(envelope.data) if isinstance(envelope.data, Mapping) else {}
    out = {}
    for name, path in mapping.items():
        found, value = resolve_path(envelope, path)
        if found:
            out[name] = value
    return out
