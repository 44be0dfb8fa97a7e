"""Load ``esb.yaml``: YAML with lines → pydantic models → every adapter's own settings model,
collecting every problem (file, line, key) before failing once."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from esb.bus.config.model import Config, project_dir
from esb.bus.config.secrets import find_secrets, literal_secret_problems, log_secrets
from esb.bus.config.yamlsource import Document, Loc, load_yaml
from esb.bus.errors import ConfigError
from esb.bus.plugins import Registry, adapters


@dataclass
class Loaded:
    """A validated configuration plus each endpoint's validated adapter settings."""

    config: Config
    document: Document | None
    source_settings: dict[str, BaseModel] = field(default_factory=dict)
    destination_settings: dict[str, BaseModel] = field(default_factory=dict)

    def models(self) -> list[tuple[Loc, BaseModel]]:
        """Every validated model with the key path it sits at in the file."""
        return _models(self.config, self.source_settings, self.destination_settings)

    def log_secrets(self) -> list[str]:
        """The values no log line may show: every secret setting, and the fallback guesses of
        :func:`esb.bus.config.secrets.log_secrets`."""
        return log_secrets(self.models(), self.document)


def format_errors(doc: Document | None, exc: ValidationError, prefix: Loc = (),
                  secret: bool = False) -> list[str]:
    """One line per pydantic error: ``file:line: key.path: message``. Errors about a value
    made from an unset variable are left out (that problem is reported already)."""
    out = []
    for err in exc.errors():
        loc: Loc = (*prefix, *(p for p in err["loc"] if not str(p).startswith("function-")))
        if doc is not None and doc.is_placeholder(loc):
            continue
        key = ".".join(str(p) for p in loc) or "(top)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and not secret and err["type"] not in ("missing",) \
                and doc is not None and loc not in doc.secret_paths \
                and isinstance(err["input"], (str, int, float)):
            msg = f"{msg} (got {err['input']!r})"
        out.append(f"{_where(doc, loc)}: {key}: {msg}")
    return out


def load_config(path: Path | str, env: Mapping[str, str] | None = None, *,
                registry: Registry | None = None, base_dir: Path | None = None) -> Loaded:
    """Read and validate a configuration file. Raises ConfigError listing every problem
    (unset variables included: validation goes on with placeholders for them)."""
    path = Path(path)
    doc = load_yaml(path, env if env is not None else os.environ, placeholders=True)
    raw = doc.value if doc.value is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError([*doc.unset_problems(),
                           f"{doc.where(())}: the configuration must be a mapping of keys"])
    return validate_config(raw, doc, registry=registry, base_dir=base_dir or project_dir(path))


def validate_config(raw: dict[str, Any], doc: Document | None, *,
                    registry: Registry | None = None, base_dir: Path) -> Loaded:
    """Validate the core keys and every endpoint's adapter settings, then fail once (with
    the unset variables of ``doc`` among the problems)."""
    problems: list[str] = doc.unset_problems() if doc else []
    config: Config | None = None
    try:
        config = Config.model_validate({**raw, "base_dir": base_dir,
                                        "path": doc.path if doc else None})
    except ValidationError as exc:
        problems.extend(format_errors(doc, exc))
    registry = registry or adapters()
    settings: dict[str, dict[str, BaseModel]] = {"sources": {}, "destinations": {}}
    for kind, direction in (("sources", "inbound"), ("destinations", "outbound")):
        endpoints = raw.get(kind)
        if not isinstance(endpoints, dict):
            continue
        for name, ep in endpoints.items():
            if not isinstance(ep, dict) or not isinstance(ep.get("adapter"), str):
                continue  # the core model reported it
            result = _adapter_settings(kind, name, ep, direction, doc, registry, problems,
                                       base_dir)
            if result is not None:
                settings[kind][name] = result
    models = _models(config, settings["sources"], settings["destinations"])
    if config is None:  # the sections that did validate are still checked for literal secrets
        models += _core_sections(raw)
    for prefix, model in models:
        problems.extend(literal_secret_problems(doc, find_secrets(model, prefix)))
    if problems or config is None:
        raise ConfigError(problems)
    return Loaded(config=config, document=doc, source_settings=settings["sources"],
                  destination_settings=settings["destinations"])


def _models(config: Config | None, sources: dict[str, BaseModel],
            destinations: dict[str, BaseModel]) -> list[tuple[Loc, BaseModel]]:
    out: list[tuple[Loc, BaseModel]] = [((), config)] if config is not None else []
    out += [(("sources", name), model) for name, model in sources.items()]
    out += [(("destinations", name), model) for name, model in destinations.items()]
    return out


def _core_sections(raw: dict[str, Any]) -> list[tuple[Loc, BaseModel]]:
    """Each top-level section of the core model (``admin``, ``bus`` ...) validated on its
    own, for when the whole did not validate (the errors were reported already)."""
    out: list[tuple[Loc, BaseModel]] = []
    for name, info in Config.model_fields.items():
        kind, value = info.annotation, raw.get(name)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(value, dict):
            with contextlib.suppress(ValidationError):
                out.append(((name,), kind.model_validate(value)))
    return out


_COMMON_KEYS = ("adapter", "description", "delivery", "runs")


def _adapter_settings(kind: str, name: str, ep: dict[str, Any], direction: str,
                      doc: Document | None, registry: Registry,
                      problems: list[str], base_dir: Path) -> BaseModel | None:
    loc: Loc = (kind, name)
    adapter = ep["adapter"]
    if doc is not None and doc.is_placeholder((*loc, "adapter")):
        return None  # which adapter is unknown: its unset variable is reported
    if adapter not in registry:
        problems.append(f"{_where(doc, (*loc, 'adapter'))}: {kind}.{name}.adapter: "
                        f"{registry.unknown_message(adapter)}")
        return None
    try:
        spec = registry.get(adapter)
    except Exception as exc:  # a broken plugin must not hide the other problems
        problems.append(f"{_where(doc, loc)}: {kind}.{name}: adapter {adapter!r} "
                        f"failed to load: {exc}")
        return None
    model = getattr(spec, f"{direction}_settings", None)
    if model is None or getattr(spec, direction, None) is None:
        problems.append(f"{_where(doc, (*loc, 'adapter'))}: {kind}.{name}.adapter: "
                        f"adapter {adapter!r} has no {direction} side "
                        f"(it offers: {', '.join(spec.directions) or 'nothing'})")
        return None
    own = {k: v for k, v in ep.items() if k not in _COMMON_KEYS}
    try:
        # validators may look at the files a setting names: {"config_dir": the folder
        # relative paths resolve against}
        return model.model_validate(own, context={"config_dir": base_dir})
    except ValidationError as exc:
        problems.extend(format_errors(doc, exc, loc))
        return None


def _where(doc: Document | None, loc: Loc) -> str:
    return doc.where(loc) if doc else "config"


def override_listen(loaded: Loaded, listen: str) -> None:
    """Replace ``http.listen`` (``esb run --listen HOST:PORT``). Raises ConfigError when
    ``listen`` is not HOST:PORT."""
    http = loaded.config.http
    try:
        loaded.config.http = type(http).model_validate({**http.model_dump(), "listen": listen})
    except ValidationError as exc:
        raise ConfigError([f"--listen: {e['msg']} (got {listen!r})"
                           for e in exc.errors()]) from exc
