"""What ``esb transform NAME|CHAIN FILE`` runs: one transformer or a chain over one file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError
from esb.bus.payload import PayloadError, read_file
from esb.transformers.chain import StepSpec, build_chain

_STYLESHEETS = (".xsl", ".xslt")
_CHAINS = (".yaml", ".yml")


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
    try:
        ct, data = read_file(file, content_type)
    except PayloadError as exc:
        raise ConfigError([f"{file}: {exc}"]) from None
    if Path(spec).suffix.lower() in _STYLESHEETS:
        spec = str(_locate(spec, base_dir).resolve())
    chain = build_chain(steps_for(spec, base_dir=base_dir), base_dir=base_dir, named=named,
                        where=Path(spec).name if Path(spec).suffix else "transform")
    env = Envelope(source=source, type=type, datacontenttype=ct, data=data, subject=file.name)
    return chain(env)
