"""What ``esb transform NAME|CHAIN FILE`` runs: one transformer or a chain over one file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError
from esb.transformers.chain import StepSpec, build_chain

_SUFFIX_TYPES = {".xml": "application/xml", ".json": "application/json"}
_STYLESHEETS = (".xsl", ".xslt")
_CHAINS = (".yaml", ".yml")


def guess_content_type(file: Path) -> str:
    """``application/xml`` for .xml, ``application/json`` for .json, else ``text/plain``."""
    return _SUFFIX_TYPES.get(file.suffix.lower(), "text/plain")


def steps_for(spec: str, *, base_dir: Path) -> list[StepSpec]:
    """The steps ``spec`` stands for: a stylesheet path, a YAML chain file or a transformer."""
    suffix = Path(spec).suffix.lower()
    if suffix in _STYLESHEETS:
        return [{"xslt": spec}]
    if suffix in _CHAINS:
        path = _locate(spec, base_dir)
        try:
            steps = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([f"{spec}: cannot read chain: {exc}"]) from None
        if not isinstance(steps, list):
            raise ConfigError([f"{spec}: a chain file holds a YAML list of steps"])
        return steps
    return [spec]


def _locate(spec: str, base_dir: Path) -> Path:
    path = Path(spec)
    if path.is_absolute() or path.exists():
        return path
    return base_dir / path


def load_payload(file: Path, content_type: str) -> Any:
    """The file's content as envelope data in ``content_type``."""
    raw = file.read_bytes()
    probe = Envelope(source="cli", type="probe", datacontenttype=content_type)
    if probe.is_json:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError([f"{file}: not valid JSON: {exc}"]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def run_transform(spec: str, file: Path, *, base_dir: Path, type: str = "sample",
                  source: str = "cli", content_type: str | None = None,
                  named: Mapping[str, StepSpec | Sequence[StepSpec]] | None = None
                  ) -> Envelope:
    """Run a transformer (entry-point name), a named definition from ``named`` (the
    configuration's ``transformers:``), a stylesheet (``.xsl``/``.xslt``) or a chain (``.yaml``
    list of steps, which may name definitions too) over ``file``; relative paths in steps
    resolve against ``base_dir``. Raises ``ConfigError`` for a bad spec, and from the run
    ``DropEnvelope``, ``TransformError`` or ``TransientTransformError`` (each naming the
    step)."""
    ct = content_type or guess_content_type(file)
    if Path(spec).suffix.lower() in _STYLESHEETS:
        # A stylesheet named on the command line is the operator's own: its folder is the one
        # it is confined to (a route's stylesheets must lie in the configuration folder).
        located = _locate(spec, base_dir).resolve()
        base_dir, spec = located.parent, located.name
    chain = build_chain(steps_for(spec, base_dir=base_dir), base_dir=base_dir, named=named,
                        where=Path(spec).name if Path(spec).suffix else "transform")
    env = Envelope(source=source, type=type, datacontenttype=ct,
                   data=load_payload(file, ct), subject=file.name)
    return chain(env)
