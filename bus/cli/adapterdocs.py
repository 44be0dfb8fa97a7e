"""Settings reference tables for docs/adapters.md, generated from the adapters' settings models
so the docs cannot drift from the code.

A direction's table lives between ``<!-- generated:settings NAME DIRECTION -->`` and
``<!-- /generated -->``; the table of a nested settings model (a field whose type is a model,
such as ``auth``'s variants, ``poll``, ``poll.cursor`` or ``wsse``) between
``<!-- generated:model CLASSNAME -->`` and ``<!-- /generated -->``, under a caption naming the
class as the parent table's type column does. Each row: setting, type, default, and the meaning
— ``Field(description=...)`` when given, else the ``#:`` comment above the field in its source
(the Sphinx convention, read with :mod:`inspect`), else nothing.
``python -m esb.bus.cli.adapterdocs [--check] [FILE]`` rewrites the regions in place
(``--check``: exit 1 when FILE is out of date), adding a region under "Settings reference" for
any built-in direction or nested model that has none yet.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import sys
import types
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from esb.adapters.spec import AdapterSpec
from esb.bus.plugins import adapters

REGION = re.compile(r"<!-- generated:settings (?P<name>[a-z][a-z0-9_-]*) "
                    r"(?P<direction>inbound|outbound) -->\n.*?<!-- /generated -->",
                    re.DOTALL)
MODEL_REGION = re.compile(r"<!-- generated:model (?P<model>[A-Za-z_]\w*) -->\n.*?"
                          r"<!-- /generated -->", re.DOTALL)
REFERENCE_HEADING = "## Settings reference"
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path",
            SecretStr: "secret string", Any: "any"}


def _parsed_name(metadata: Iterable[Any]) -> str | None:
    """``duration`` for ``Annotated[float, BeforeValidator(parse_duration)]`` and the like."""
    for meta in metadata:
        func = getattr(meta, "func", None)
        if getattr(func, "__name__", "").startswith("parse_"):
            return str(func.__name__).removeprefix("parse_")
    return None


def type_text(annotation: Any) -> str:
    """A reader's name for a settings type (``list of string``, ``one of "a", "b"`` ...)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:  # e.g. Size, Duration: name them by their parse_* validator
        return _parsed_name(args[1:]) or type_text(args[0])
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        kinds = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if origin in (list, tuple, set, frozenset):
        return f"list of {_grouped(type_text(args[0]))}" if args else "list"
    if origin is dict:
        return f"mapping of {_grouped(type_text(args[1]))}" if len(args) == 2 else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping ({annotation.__name__})"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(json.dumps(m.value) for m in annotation)
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _grouped(text: str) -> str:
    """``(a or b)`` inside ``list of``/``mapping of``, so the ``or`` binds to the items."""
    return f"({text})" if " or " in text else text


def field_type_text(info: FieldInfo) -> str:
    """:func:`type_text` of a field; pydantic moves a bare ``Annotated`` type's validators to
    ``info.metadata``, so ``Duration`` is recognised there."""
    return _parsed_name(info.metadata) or type_text(info.annotation)


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
        rows.append(f"| `{key}` | {_cell(field_type_text(info))} | "
                    f"{_cell(default_text(info))} | {_cell(meaning)} |")
    return "\n".join(rows)


def models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The settings models an annotation refers to, through ``Optional``, unions (discriminated
    ones too), ``Annotated``, lists and mappings."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in get_args(annotation):
        yield from models_in(arg)


def nested_models(specs: dict[str, AdapterSpec]) -> dict[str, type[BaseModel]]:
    """Every model nested (at any depth) in the specs' settings models, by class name, parents
    before children. Two different classes with one name would share a table: refused."""
    found: dict[str, type[BaseModel]] = {}
    pending = [getattr(spec, f"{d}_settings") for _, spec in sorted(specs.items())
               for d in spec.directions]
    while pending:
        model = pending.pop(0)
        for info in model.model_fields.values():
            for nested in models_in(info.annotation):
                known = found.get(nested.__name__)
                if known is nested:
                    continue
                if known is not None:
                    raise ValueError(f"two settings models are named {nested.__name__!r} "
                                     f"({known.__module__}, {nested.__module__}); rename one")
                found[nested.__name__] = nested
                pending.append(nested)
    return found


def region(name: str, direction: str, spec: AdapterSpec) -> str:
    model = getattr(spec, f"{direction}_settings")
    if model is None:
        raise ValueError(f"adapter {name!r} has no {direction} side")
    return (f"<!-- generated:settings {name} {direction} -->\n{settings_table(model)}\n"
            "<!-- /generated -->")


def model_region(name: str, model: type[BaseModel]) -> str:
    """A nested model's table, captioned with its class name (what the parent's type column
    shows) and the first paragraph of its docstring."""
    doc = inspect.cleandoc(model.__doc__ or "").split("\n\n")[0]
    caption = f"`{name}`" + (f" — {_cell(doc)}" if doc else "")
    return (f"<!-- generated:model {name} -->\n{caption}\n\n{settings_table(model)}\n"
            "<!-- /generated -->")


def builtin_specs() -> dict[str, AdapterSpec]:
    """Adapters the esb distribution itself registers (those that load), from the process's
    adapter table."""
    registry, specs = adapters(), {}
    for info in registry.info():
        if info.package == "esb":
            with contextlib.suppress(Exception):  # one that does not load: its own tests say
                specs[info.name] = registry.get(info.name)
    return specs


def update(text: str, specs: dict[str, AdapterSpec],
           required: Iterable[tuple[str, str]] = (),
           required_models: Iterable[str] = ()) -> str:
    """``text`` with every region regenerated; missing ``required`` (name, direction) regions
    and ``required_models`` (nested model names) regions are appended under the "Settings
    reference" heading (created at the end if absent)."""
    models = nested_models(specs)

    def replace(m: re.Match[str]) -> str:
        spec = specs.get(m.group("name"))
        if spec is None:
            return m.group(0)  # not installed here: leave it as it is
        return region(m.group("name"), m.group("direction"), spec)

    def replace_model(m: re.Match[str]) -> str:
        model = models.get(m.group("model"))
        return m.group(0) if model is None else model_region(m.group("model"), model)

    text = MODEL_REGION.sub(replace_model, REGION.sub(replace, text))
    present = {(m.group("name"), m.group("direction")) for m in REGION.finditer(text)}
    present_models = {m.group("model") for m in MODEL_REGION.finditer(text)}
    added = [f"\n### {name} {direction}\n\n{region(name, direction, specs[name])}\n"
             for name, direction in required if (name, direction) not in present]
    added += [f"\n### {name}\n\n{model_region(name, models[name])}\n"
              for name in required_models if name not in present_models]
    return _append_to_reference(text, "".join(added)) if added else text


def _append_to_reference(text: str, added: str) -> str:
    if REFERENCE_HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{REFERENCE_HEADING}\n"
    head, _, tail = text.partition(REFERENCE_HEADING)
    section, sep, rest = tail.partition("\n## ")
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
    new = update(old, specs, builtin_pairs(specs), nested_models(specs))
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
