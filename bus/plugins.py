"""Name → spec tables for adapters and transformers, loaded lazily from entry points.

Built-ins register under the same entry-point groups as third-party plugins
(``esb.adapters``, ``esb.transformers``), so the plugin path is the one exercised every day.
Nothing is imported until a name is first looked up, and each group is scanned once per process
(:func:`adapters`, :func:`transformers`); a test builds its own :class:`Registry` with ``extra``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from esb.bus.errors import ConfigError

ADAPTERS_GROUP = "esb.adapters"
TRANSFORMERS_GROUP = "esb.transformers"

T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    package: str
    version: str
    value: str


@dataclass
class Registry(Generic[T]):
    """A lazy table of one entry-point group. ``extra`` lets tests add specs without installing."""

    group: str
    kind: str
    extra: dict[str, T] = field(default_factory=dict)
    _loaded: dict[str, T] = field(default_factory=dict)

    @cached_property
    def _points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        return sorted(set(self._points) | set(self.extra))

    def __contains__(self, name: str) -> bool:
        return name in self.extra or name in self._points

    def get(self, name: str) -> T:
        if name in self.extra:
            return self.extra[name]
        if name in self._loaded:
            return self._loaded[name]
        ep = self._points.get(name)
        if ep is None:
            raise ConfigError([self.unknown_message(name)])
        spec = self._loaded[name] = ep.load()
        return spec

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        known = ", ".join(self.names()) or "none installed"
        return f"unknown {self.kind} {name!r}.{hint} (installed: {known})"

    def info(self) -> list[PluginInfo]:
        out = []
        for name, ep in sorted(self._points.items()):
            dist = ep.dist
            out.append(PluginInfo(name, dist.name if dist else "?",
                                  dist.version if dist else "?", ep.value))
        return out


@cache
def adapters() -> Registry:
    """The process's one adapter table (entry points scanned once, on first look-up)."""
    return Registry(ADAPTERS_GROUP, "adapter")


@cache
def transformers() -> Registry:
    """The process's one transformer table (entry points scanned once, on first look-up)."""
    return Registry(TRANSFORMERS_GROUP, "transformer")


def describe_installed(registry: Registry) -> list[dict[str, str]]:
    """One row per installed entry point of ``registry``: name, package, version, summary and
    (adapters) directions. A plugin that fails to load is listed with the reason, not fatal."""
    rows = []
    for info in registry.info():
        row = {"name": info.name, "package": info.package, "version": info.version,
               "summary": "", "directions": ""}
        try:
            spec = registry.get(info.name)
        except Exception as exc:
            row["summary"] = f"(fails to load: {exc})"
        else:
            row["summary"] = str(spec.summary or "")
            directions = getattr(spec, "directions", None)
            if directions is not None:
                row["directions"] = ",".join(directions)
        rows.append(row)
    return rows
