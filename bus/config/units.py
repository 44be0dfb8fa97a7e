"""Human-friendly units in configuration: durations (``10s``, ``500ms``) and rates (``100/s``)."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(ms|s|m|h)\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``10s``, ``500ms``, ``2m``, ``1.5h`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '10s' or '500ms'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _SCALE[m.group(2)]
    raise ValueError(f"{value!r} is not a duration (examples: 10s, 500ms, 2m, 1h)")


def parse_rate(value: Any) -> float:
    """Events per second from ``100/s``, ``6000/m`` or a bare number per second."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        m = _RATE.match(value)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) / _SCALE[m.group(2)]
        with contextlib.suppress(ValueError):  # a bare number, e.g. from ${RATE}
            if (number := float(value)) > 0:
                return number
    raise ValueError(f"{value!r} is not a rate (examples: 100/s, 6000/m)")


def parse_size(value: Any) -> int:
    """Bytes from ``1MiB``, ``512KiB``, ``10MB`` or a bare number."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = re.match(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", value)
        if m:
            scale = {"B": 1, "KB": 1000, "KiB": 1024, "MB": 10**6, "MiB": 2**20,
                     "GB": 10**9, "GiB": 2**30, None: 1}[m.group(2)]
            return int(m.group(1)) * scale
    raise ValueError(f"{value!r} is not a size (examples: 1MiB, 512KiB, 1048576)")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
Size = Annotated[int, BeforeValidator(parse_size)]
