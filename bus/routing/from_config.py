"""The one way a route set becomes a router for a configuration: its sources, destinations,
named transformers and base folder. The daemon, ``esb routes deploy`` (through the daemon) and
the offline commands (``esb routes validate``, ``esb routes test``) all compile here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esb.bus.routing.router import Router, compile_routes
from esb.bus.routing.routeset import RouteSet, parse_route_files, read_route_files

if TYPE_CHECKING:
    from esb.bus.config.loader import Loaded
    from esb.bus.config.model import Config

#: (route files, version number) → a compiled router; raises ConfigError listing every problem.
Compile = Callable[[dict[str, str], int], Router]


def router_for(cfg: Config, rs: RouteSet, *, version: int = 0, registry: Any = None
               ) -> Router:
    """``rs`` compiled against configuration ``cfg`` (ConfigError lists every problem)."""
    return compile_routes(rs, sources=cfg.sources, destinations=cfg.destinations,
                          named=cfg.transformers, base_dir=cfg.base_dir, version=version,
                          registry=registry, xml_limits=cfg.limits.xml.limits)


def config_compiler(loaded: Loaded, registry: Any = None, base: Path | None = None) -> Compile:
    """The :data:`Compile` function of a loaded configuration. ``base`` prefixes file names
    in error messages."""
    def compile_files(files: dict[str, str], version: int) -> Router:
        rs = parse_route_files(files, base=base, limits=loaded.config.limits.yaml.limits)
        return router_for(loaded.config, rs, version=version, registry=registry)

    return compile_files


def load_router(loaded: Loaded, path: Path | None = None, version: int = 0,
                registry: Any = None) -> Router:
    """Compile the route files at ``path`` (default: the configured folder)."""
    cfg = loaded.config
    path = path or cfg.resolve(cfg.routes)
    compile_files = config_compiler(loaded, registry, base=path if path.is_dir() else
                                    path.parent)
    return compile_files(read_route_files(path), version)
