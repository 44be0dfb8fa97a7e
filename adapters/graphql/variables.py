"""Outbound variables: names mapped to paths into the envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esb.bus.envelope import Envelope
from esb.bus.payload import MISSING, field


def build_variables(envelope: Envelope, mapping: Mapping[str, str]) -> dict[str, Any]:
    """The request's ``variables``; paths that lead nowhere are left out (the server then
    applies the variable's default, or rejects a required one)."""
    if not mapping:
        return dict(envelope.data) if isinstance(envelope.data, Mapping) else {}
    out = {}
    for name, path in mapping.items():
        value = field(envelope, path)
        if value is not MISSING:
            out[name] = value
    return out
