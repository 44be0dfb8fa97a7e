"""Settings reference tables for docs/adapters.md, generated from the adapters' settings models
so the docs cannot drift from the code.

A table lives between ``<!-- generated:settings NAME DIRECTION -->`` and ``<!-- /generated -->``.
Each row: setting, type, default, and the meaning — ``Field(description=...)`` when given, else
the ``#:`` comment above the field in its source (the Sphinx convention, read with
:mod:`inspect`), else nothing. ``python -m esb.bus.cli.adapterdocs [--check] [FILE]`` rewrites
the regions in place (``--check``: exit 1 when FILE is out of date), adding a region under
"Settings reference" for any built-in direction that has none yet.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from collections.abc import Iterable
from enum import Enum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from esb.adapters.spec import AdapterSpec

REGION = re.compile(r"<!-- generated:settings (?P<name>[a-z][a-z0-9_-]*) "
                    r"(?P<direction>inbound|outbound) -->\n.*?<!-- /generated -->",
                    re.DOTALL)
REFERENCE_HEADING = "## Settings reference"
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path",
            SecretStr: "secret string", Any: "any"}


def type_text(annotation: Any) -> str:
    """A reader's name for a settings type (``list of string``, ``one of "a", "b"`` ...)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:  # e.g. Size, Duration: name them by their parse_* validator
        for meta in args[1:]:
            func = getattr(meta, "func", None)
            if getattr(func, "__name__", "").startswith("parse_"):
                return func.__name__.removeprefix("parse_")
        return type_text(args[0])
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        kinds = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_text(args[1])}" if len(args) == 2 else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping ({annotation.__name__})"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(json.dumps(m.value) for m in annotation)
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "—"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return "`" + json.dumps(value, default=str) + "`"


def source_comments(model: type[BaseModel]) -> dict[str, str]:
    """``#:`` comments above each field of ``model`` and its bases, read from the source."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines[1:]:
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            match = re.match(r"^\s+([A-Za-z_]\w*)\s*:", line)
            if match and pending:
                found[match.group(1)] = " ".join(pending)
            pending = []
    return found


def _cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ").strip()


def settings_table(model: type[BaseModel]) -> str:
    """The markdown table of one settings model."""
    comments = source_comments(model)
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        key = info.alias or name
        meaning = info.description or comments.get(name, "")
        rows.append(f"| `{key}` | {_cell(type_text(info.annotation))} | "
                    f"{_cell(default_text(info))} | {_cell(meaning)} |")
    return "\n".join(rows)


def region(name: str, direction: str, spec: AdapterSpec) -> str:
    model = getattr(spec, f"{direction}_settings")
    if model is None:
        raise ValueError(f"adapter {name!r} has no {direction} side")
    return (f"<!-- generated:settings {name} {direction} -->\n{settings_table(model)}\n"
            "<!-- /generated -->")


def builtin_specs() -> dict[str, AdapterSpec]:
    """Adapters the esb distribution itself registers (those that load)."""
    specs = {}
    for ep in entry_points(group="esb.adapters"):
        if ep.dist is None or ep.dist.name != "esb":
            continue
        try:
            specs[ep.name] = ep.load()
        except Exception:  # a built-in that does not load is reported by its own tests
            continue
    return specs


def update(text: str, specs: dict[str, AdapterSpec],
           required: Iterable[tuple[str, str]] = ()) -> str:
    """``text`` with every region regenerated; missing ``required`` (name, direction) regions
    are appended under the "Settings reference" heading (created at the end if absent)."""

    def replace(m: re.Match[str]) -> str:
        spec = specs.get(m.group("name"))
        if spec is None:
            return m.group(0)  # not installed here: leave it as it is
        return region(m.group("name"), m.group("direction"), spec)

    text = REGION.sub(replace, text)
    present = {(m.group("name"), m.group("direction")) for m in REGION.finditer(text)}
    missing = [pair for pair in required if pair not in present]
    if not missing:
        return text
    if REFERENCE_HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{REFERENCE_HEADING}\n"
    head, _, tail = text.partition(REFERENCE_HEADING)
    section, sep, rest = tail.partition("\n## ")
    added = "".join(f"\n### {name} {direction}\n\n{region(name, direction, specs[name])}\n"
                    for name, direction in missing)
    return head + REFERENCE_HEADING + section.rstrip("\n") + "\n" + added + \
        (("\n" + sep.lstrip("\n") + rest) if sep else "")


def builtin_pairs(specs: dict[str, AdapterSpec]) -> list[tuple[str, str]]:
    return [(name, d) for name, spec in sorted(specs.items()) for d in spec.directions]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    path = Path(args[0] if args else "docs/adapters.md")
    specs = builtin_specs()
    old = path.read_text()
    new = update(old, specs, builtin_pairs(specs))
    if new == old:
        print(f"{path}: settings tables are up to date")
        return 0
    if check:
        print(f"{path}: settings tables are out of date; run "
              f"`python -m esb.bus.cli.adapterdocs {path}`")
        return 1
    path.write_text(new)
    print(f"{path}: settings tables regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
