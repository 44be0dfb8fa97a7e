"""A route set: the route files deployed together, parsed with file:line for every problem.

A route set travels and is stored as its documents (file name → text), so versions can be
diffed and rolled back as documents; it is compiled into a :class:`~esb.bus.routing.router.Router`
where it runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from esb.bus.config.loader import format_errors
from esb.bus.config.yamlsource import Document, parse_yaml
from esb.bus.errors import ConfigError
from esb.bus.routing.model import Route, RouteFile

ROUTE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class PlacedRoute:
    """A route and where it was written."""

    route: Route
    file: str
    index: int
    document: Document

    def where(self, *loc: str | int) -> str:
        """``file:line`` of a key inside this route."""
        return self.document.where(("routes", self.index, *loc))


@dataclass
class RouteSet:
    """Parsed route documents, in file order."""

    files: dict[str, str]
    routes: list[PlacedRoute] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)
    parsed: dict[str, RouteFile] = field(default_factory=dict)
    documents: dict[str, Document] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest_files(self.files)


def digest_files(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


def read_route_files(path: Path) -> dict[str, str]:
    """File name → text for a route file or every ``*.yaml`` in a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in ROUTE_SUFFIXES and p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError([f"{path}: no such route file or folder"])
    out: dict[str, str] = {}
    problems = []
    for p in files:
        try:
            out[p.name] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{p}: cannot read: {exc}")
    if problems:
        raise ConfigError(problems)
    return out


def parse_route_files(files: dict[str, str], base: Path | None = None) -> RouteSet:
    """Parse and schema-check every file; ConfigError lists every problem with file:line."""
    rs = RouteSet(files=dict(files))
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name in sorted(files):
        shown = Path(base, name) if base else Path(name)
        try:
            doc = parse_yaml(files[name], shown)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        raw: Any = doc.value if doc.value is not None else {}
        if not isinstance(raw, dict):
            problems.append(f"{shown}:1: a route file is a mapping with a 'routes' list")
            continue
        try:
            parsed = RouteFile.model_validate(raw)
        except ValidationError as exc:
            problems.extend(format_errors(doc, exc))
            continue
        rs.parsed[name] = parsed
        rs.documents[name] = doc
        for prefix, uri in parsed.namespaces.items():
            if rs.namespaces.get(prefix, uri) != uri:
                problems.append(f"{doc.where(('namespaces', prefix))}: namespaces.{prefix}: "
                                f"bound to {rs.namespaces[prefix]!r} in another file")
            rs.namespaces[prefix] = uri
        for i, route in enumerate(parsed.routes):
            where = doc.where(("routes", i, "name"))
            if route.name in seen:
                problems.append(f"{where}: routes[{i}].name: duplicate route name "
                                f"{route.name!r} (also at {seen[route.name]})")
                continue
            seen[route.name] = where
            rs.routes.append(PlacedRoute(route, name, i, doc))
    if problems:
        raise ConfigError(problems)
    return rs
