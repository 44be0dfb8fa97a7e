"""YAML documents that remember where each value came from, with ``${VAR}`` interpolation.

Loading yields plain Python values plus a map from key path (``("sources", "shop", "path")``)
to line number, so validation errors can name file, line and key.

An unset ``${VAR}`` (without default) is an error; with ``placeholders=True`` it is replaced by
an empty string and recorded in :attr:`Document.unset`, so the caller can go on validating and
report it together with every other problem (dropping what validation says about the
placeholder itself: see :meth:`Document.is_placeholder`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from esb.bus.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlLimits:
    """What one YAML document may make esb build (``limits.yaml``): nodes counted as built,
    so an alias counts its whole target again (a "billion laughs" of anchors stops at
    ``max_nodes``); aliases; the text's size; nesting."""

    max_nodes: int = 250_000
    max_aliases: int = 100
    max_bytes: int = 8 * 1024 * 1024
    max_depth: int = 64


DEFAULT_YAML_LIMITS = YamlLimits()
#: Tags a document may carry (YAML 1.1 core schema); anything else (``!!python/object``,
#: local ``!tags``) is refused.
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in (
    "str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary", "merge"))


class _Budget:
    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.nodes = 0
        self.aliases = 0
        self.seen: set[int] = set()

# Only used to construct scalars (it keeps no per-document state for them).
_SCALARS = yaml.SafeLoader("")
#: libyaml's composer when present: about twice as fast (a 10,000-route set is seconds of
#: parsing), with the same nodes and line marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Document:
    """A parsed YAML file: its value and the line (1-based) of every key and item."""

    path: Path
    value: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    #: Paths whose value came from ``${VAR}`` (so they are never echoed in errors or logs).
    secret_paths: set[Loc] = field(default_factory=set)
    #: Paths whose text holds a ``${VAR}`` / ``${VAR:-default}`` reference, whatever it
    #: resolved to (secret settings must be written this way).
    references: set[Loc] = field(default_factory=set)
    #: The text each reference at a path resolved to (environment values and defaults).
    substituted: dict[Loc, list[str]] = field(default_factory=dict)
    #: Paths holding an unset ``${VAR}`` (replaced by an empty placeholder) → the problem.
    unset: dict[Loc, list[str]] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest ancestor that has one."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def where(self, loc: Loc) -> str:
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)

    def is_placeholder(self, loc: Loc) -> bool:
        """Whether ``loc`` is (or lies under) a value made from an unset variable: a
        validation error there only repeats the unset-variable problem."""
        return any(loc[:i] in self.unset for i in range(1, len(loc) + 1))

    def unset_problems(self) -> list[str]:
        return [problem for problems in self.unset.values() for problem in problems]


def _interpolate(text: str, env: Mapping[str, str], missing: list[str],
                 used: list[str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            value = default
        used.append(value)
        return value

    return _VAR.sub(repl, text)


def load_yaml(path: Path, env: Mapping[str, str] = os.environ, *,
              placeholders: bool = False) -> Document:
    """Parse ``path``; syntax errors raise ConfigError, and so does an unset ``${VAR}``
    (without default) unless ``placeholders`` (see the module's documentation)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc}"]) from exc
    return parse_yaml(text, path, env, placeholders=placeholders)


def parse_yaml(text: str, path: Path, env: Mapping[str, str] | None = None, *,
               placeholders: bool = False, limits: YamlLimits = DEFAULT_YAML_LIMITS
               ) -> Document:
    """Parse YAML ``text`` (named ``path`` in errors); ``env`` enables ``${VAR}``. A document
    past ``limits`` is a ConfigError naming the limit."""
    size = len(text.encode("utf-8", "surrogatepass")) if len(text) * 4 > limits.max_bytes \
        else len(text)
    if size > limits.max_bytes:
        raise ConfigError([f"{path}: larger than {limits.max_bytes} bytes "
                           "(limits.yaml.max_bytes)"])
    if _flow_depth(text) > limits.max_depth:
        raise ConfigError([f"{path}: nested deeper than {limits.max_depth} levels "
                           "(limits.yaml.max_depth)"])
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except RecursionError:
        raise ConfigError([f"{path}: nested deeper than {limits.max_depth} levels "
                           "(limits.yaml.max_depth)"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: YAML syntax error: {problem}"]) from exc
    doc = Document(path=path, value=None)
    problems: list[str] = []
    try:
        doc.value = _build(node, (), doc, env, problems, _Budget(limits)) if node else None
    except _TooMuch as exc:
        raise ConfigError([f"{path}:{exc.line}: {exc}"]) from None
    if problems or (doc.unset and not placeholders):
        raise ConfigError([*doc.unset_problems(), *problems])
    return doc


class _TooMuch(Exception):
    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1


def _flow_depth(text: str) -> int:
    """An upper bound of the nesting of ``text`` when it is small, else its deepest run of
    flow brackets and indentation (what makes the composer recurse)."""
    opened = text.count("[") + text.count("{")
    if opened <= 64:
        return 0
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _count(node: yaml.Node, loc: Loc, budget: _Budget) -> None:
    limits = budget.limits
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise _TooMuch(f"YAML tag {tag!r} is not allowed in esb files", node)
    budget.nodes += 1
    if budget.nodes > limits.max_nodes:
        raise _TooMuch(f"more than {limits.max_nodes} YAML nodes (anchors and aliases count "
                       "each time they are used; limits.yaml.max_nodes)", node)
    if len(loc) > limits.max_depth:
        raise _TooMuch(f"nested deeper than {limits.max_depth} levels (limits.yaml.max_depth)",
                       node)
    if isinstance(node, yaml.ScalarNode):
        return
    key = id(node)
    if key in budget.seen:
        budget.aliases += 1
        if budget.aliases > limits.max_aliases:
            raise _TooMuch(f"more than {limits.max_aliases} YAML aliases "
                           "(limits.yaml.max_aliases)", node)
    else:
        budget.seen.add(key)


def _build(node: yaml.Node, loc: Loc, doc: Document, env: Mapping[str, str] | None,
           problems: list[str], budget: _Budget) -> Any:
    _count(node, loc, budget)
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(f"{doc.path}:{key_node.start_mark.line + 1}: keys must be "
                                "plain strings")
                continue
            key = key_node.value
            if key == "<<":
                problems.append(f"{doc.path}:{key_node.start_mark.line + 1}: YAML merge keys "
                                "are not supported")
                continue
            if key in out:
                problems.append(f"{doc.path}:{key_node.start_mark.line + 1}: duplicate key "
                                f"{key!r}")
            child = (*loc, key)
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, doc, env, problems, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), doc, env, problems, budget)
                for i, item in enumerate(node.value)]
    try:
        value = _SCALARS.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # !!int x, !!binary %% ...
        problems.append(f"{doc.path}:{node.start_mark.line + 1}: "
                        f"{getattr(exc, 'problem', None) or exc}")
        return None
    if isinstance(value, str) and _VAR.search(value):
        doc.references.add(loc)
    if env is not None and isinstance(value, str) and "${" in value:
        missing: list[str] = []
        used: list[str] = []
        new = _interpolate(value, env, missing, used)
        if missing:
            doc.unset[loc] = [f"{doc.where(loc)}: {'.'.join(map(str, loc))}: environment "
                              f"variable {name} is not set (use ${{{name}:-default}})"
                              for name in missing]
        if new != value:
            doc.secret_paths.add(loc)
            doc.substituted[loc] = used
        # Always a string: the setting's own type converts it ("200" for a number, "true" for
        # a flag), and a token or password that happens to look like a number stays text.
        return new
    return value
