"""What the CLI writes: aligned tables, JSON, and the line it exits with on failure."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
import orjson

#: The configuration file commands read when neither ``--config`` nor ``ESB_CONFIG`` names one.
DEFAULT_CONFIG = "config/esb.yaml"


def emit_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fail(message: str, code: int = 1) -> NoReturn:
    """``esb: message`` on stderr, then exit ``code``."""
    click.echo(f"esb: {message}", err=True)
    sys.exit(code)


def problems(found: Sequence[str], code: int = 2) -> NoReturn:
    """Every problem (``file:line: ...``) on stderr, then exit ``code``."""
    click.echo(f"esb: {len(found)} problem(s):", err=True)
    for p in found:
        click.echo(f"  {p}", err=True)
    sys.exit(code)
