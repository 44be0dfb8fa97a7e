"""A route set: the route files deployed together, parsed with file:line for every problem.

A route set travels and is stored as its documents (file name → text), so versions can be
diffed and rolled back as documents; it is compiled into a :class:`~esb.bus.routing.router.Router`
where it runs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from esb.bus.config.loader import format_errors
from esb.bus.config.yamlsource import DEFAULT_YAML_LIMITS, Document, YamlLimits, parse_yaml
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
    #: Schema problems and duplicate names (file:line each), found while parsing.
    problems: list[str] = field(default_factory=list)

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


def parse_route_files(files: dict[str, str], base: Path | None = None,
                      limits: YamlLimits = DEFAULT_YAML_LIMITS) -> RouteSet:
    """Parse and schema-check every file, collecting every problem (with file:line) in
    :attr:`RouteSet.problems` instead of raising.

    Each route is checked on its own: the routes that parse are kept in :attr:`RouteSet.routes`
    (so :func:`~esb.bus.routing.router.compile_routes` can check their references, patterns
    and transformers too), a route with a schema error is left out (its later checks would only
    repeat it). ``compile_routes`` raises everything found here with its own problems; a caller
    that does not compile must check ``problems`` itself.
    """
    rs = RouteSet(files=dict(files))
    seen: dict[str, str] = {}
    for name in sorted(files):
        shown = Path(base, name) if base else Path(name)
        _parse_file(rs, name, shown, seen, limits)
    return rs


def _parse_file(rs: RouteSet, name: str, shown: Path, seen: dict[str, str],
                limits: YamlLimits) -> None:
    """Add one file's valid routes to ``rs`` and its problems to ``rs.problems``."""
    try:
        doc = parse_yaml(rs.files[name], shown, limits=limits)
    except ConfigError as exc:
        rs.problems.extend(exc.problems)
        return
    raw: Any = doc.value if doc.value is not None else {}
    if not isinstance(raw, dict):
        rs.problems.append(f"{shown}:1: a route file is a mapping with a 'routes' list")
        return
    rs.documents[name] = doc
    items = raw.get("routes", [])
    if not isinstance(items, list):  # the file-level check reports it
        items = []
    head, namespaces = _file_level(raw, doc, rs.problems)
    routes: list[Route] = []
    for i, item in enumerate(items):
        route = _route(item, i, doc, rs.problems)
        label = route.name if route else _raw_name(item)
        if label is not None:  # a duplicate is still checked for its own problems
            _check_unique(label, i, doc, seen, rs.problems)
        if route is None:
            continue
        routes.append(route)
        if namespaces is not None:  # without its prefix map a route's $xpath can't be judged
            rs.routes.append(PlacedRoute(route, name, i, doc))
    if namespaces is not None:
        _merge_namespaces(rs, namespaces, doc)
    if head is not None:
        rs.parsed[name] = head.model_copy(update={"routes": routes})


def _file_level(raw: dict[str, Any], doc: Document, problems: list[str]
                ) -> tuple[RouteFile | None, dict[str, str] | None]:
    """The file without its routes (namespaces, tests, unknown keys): the model (None when
    invalid) and its namespace map (None when that is what is invalid)."""
    items = raw.get("routes", [])
    try:
        head = RouteFile.model_validate({**raw, "routes": [] if isinstance(items, list)
                                         else items})
    except ValidationError as exc:
        problems.extend(format_errors(doc, exc))
        if any(err["loc"][:1] == ("namespaces",) for err in exc.errors()):
            return None, None
        return None, dict(raw.get("namespaces") or {})
    return head, head.namespaces


def _route(item: Any, i: int, doc: Document, problems: list[str]) -> Route | None:
    try:
        return Route.model_validate(item)
    except ValidationError as exc:
        problems.extend(format_errors(doc, exc, prefix=("routes", i)))
        return None


def _raw_name(item: Any) -> str | None:
    """The name a route that failed its schema check was given (for duplicate detection)."""
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) else None


def _check_unique(route_name: str, i: int, doc: Document, seen: dict[str, str],
                  problems: list[str]) -> None:
    where = doc.where(("routes", i, "name"))
    if route_name in seen:
        problems.append(f"{where}: routes[{i}].name: duplicate route name "
                        f"{route_name!r} (also at {seen[route_name]})")
        return
    seen[route_name] = where


def _merge_namespaces(rs: RouteSet, namespaces: dict[str, str], doc: Document) -> None:
    for prefix, uri in namespaces.items():
        if rs.namespaces.get(prefix, uri) != uri:
            rs.problems.append(f"{doc.where(('namespaces', prefix))}: namespaces.{prefix}: "
                               f"bound to {rs.namespaces[prefix]!r} in another file")
        rs.namespaces[prefix] = uri


_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+): ")


def sort_problems(problems: list[str]) -> list[str]:
    """Problems ordered by file, then line (a problem without a line first in its file);
    problems on one line keep the order they were found in."""
    def key(problem: str) -> tuple[str, int]:
        m = _LOCATED.match(problem)
        if m:
            return m["file"], int(m["line"])
        return problem.split(": ", 1)[0], 0

    return sorted(problems, key=key)
