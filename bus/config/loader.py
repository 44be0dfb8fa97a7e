"""Load ``esb.yaml``: YAML with lines → pydantic models → every adapter's own settings model,
collecting every problem (file, line, key) before failing once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esb.bus.config.model import Config
from esb.bus.config.yamlsource import Document, Loc, load_yaml
from esb.bus.errors import ConfigError
from esb.bus.plugins import Registry, adapters
from pydantic import BaseModel, ValidationError


@dataclass
class Loaded:
    """A validated configuration plus each endpoint's validated adapter settings."""

    config: Config
    document: Document | None
    source_settings: dict[str, BaseModel] = field(default_factory=dict)
    destination_settings: dict[str, BaseModel] = field(default_factory=dict)


def format_errors(doc: Document | None, exc: ValidationError, prefix: Loc = (),
                  secret: bool = False) -> list[str]:
    """One line per pydantic error: ``file:line: key.path: message``."""
    out = []
    for err in exc.errors():
        loc: Loc = (*prefix, *(p for p in err["loc"] if not str(p).startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(top)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and not secret and err["type"] not in ("missing",) \
                and doc is not None and loc not in doc.secret_paths \
                and isinstance(err["input"], (str, int, float)):
            msg = f"{msg} (got {err['input']!r})"
        where = doc.where(loc) if doc else "config"
        out.append(f"{where}: {key}: {msg}")
    return out


def load_config(path: Path | str, env: Mapping[str, str] | None = None, *,
                registry: Registry | None = None, base_dir: Path | None = None) -> Loaded:
    """Read and validate a configuration file. Raises ConfigError listing every problem."""
    path = Path(path)
    doc = load_yaml(path, env if env is not None else os.environ)
    raw = doc.value if doc.value is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{doc.where(())}: the configuration must be a mapping of keys"])
    return validate_config(raw, doc, registry=registry, base_dir=base_dir or Path.cwd())


def validate_config(raw: dict[str, Any], doc: Document | None, *,
                    registry: Registry | None = None, base_dir: Path) -> Loaded:
    problems: list[str] = []
    try:
        config = Config.model_validate({**raw, "base_dir": base_dir,
                                        "path": doc.path if doc else None})
    except ValidationError as exc:
        raise ConfigError(format_errors(doc, exc)) from None
    registry = registry or adapters()
    loaded = Loaded(config=config, document=doc)
    for kind, endpoints, direction in (("sources", config.sources, "inbound"),
                                       ("destinations", config.destinations, "outbound")):
        for name, ep in endpoints.items():
            loc: Loc = (kind, name)
            if ep.adapter not in registry:
                problems.append(f"{_where(doc, (*loc, 'adapter'))}: {kind}.{name}.adapter: "
                                f"{registry.unknown_message(ep.adapter)}")
                continue
            try:
                spec = registry.get(ep.adapter)
            except Exception as exc:  # a broken plugin must not hide the other problems
                problems.append(f"{_where(doc, loc)}: {kind}.{name}: adapter {ep.adapter!r} "
                                f"failed to load: {exc}")
                continue
            model = getattr(spec, f"{direction}_settings", None)
            if model is None or getattr(spec, direction, None) is None:
                problems.append(f"{_where(doc, (*loc, 'adapter'))}: {kind}.{name}.adapter: "
                                f"adapter {ep.adapter!r} has no {direction} side "
                                f"(it offers: {', '.join(spec.directions) or 'nothing'})")
                continue
            try:
                settings = model.model_validate(ep.adapter_settings())
            except ValidationError as exc:
                problems.extend(format_errors(doc, exc, loc))
                continue
            target = loaded.source_settings if kind == "sources" \
                else loaded.destination_settings
            target[name] = settings
    if problems:
        raise ConfigError(problems)
    return loaded


def _where(doc: Document | None, loc: Loc) -> str:
    return doc.where(loc) if doc else "config"
