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


def inline_step(text: str) -> StepSpec | None:
    """A step written inline as in a route file (``json-to-xml: {root: order}``,
    ``{jmespath: order.id}``), or None when ``text`` is a plain name or path. Raises
    ConfigError when it looks inline but is not valid YAML."""
    stripped = text.strip()
    if not (stripped.startswith(("{", "[")) or ": " in stripped or stripped.endswith(":")):
        return None  # a name, a path, or module:function
    try:
        value = yaml.safe_load(stripped)
    except yaml.YAMLError as exc:
        raise ConfigError([f"step {text!r}: not a valid inline step: {exc}"]) from None
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError([f"step {text!r}: write one step as 'name: options', e.g. "
                           "'json-to-xml: {root: order}'"])
    return value


def steps_for(spec: str, *, base_dir: Path) -> list[StepSpec]:
    """The steps ``spec`` stands for: an inline step, a stylesheet path, a YAML chain file
    or a transformer."""
    step = inline_step(spec)
    if step is not None:
        return [step]
    suffix = Path(spec).suffix.lower()
    if suffix in _STYLESHEETS:
        return [{"xslt": str(_locate(spec, base_dir).resolve())}]
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


def run_transform(spec: str | Sequence[str], file: Path, *, base_dir: Path,
                  type: str = "sample", source: str = "cli", content_type: str | None = None,
                  named: Mapping[str, StepSpec | Sequence[StepSpec]] | None = None
                  ) -> Envelope:
    """Run a transformer (entry-point name), a named definition from ``named`` (the
    configuration's ``transformers:``), a stylesheet (``.xsl``/``.xslt``), a chain (``.yaml``
    list of steps, which may name definitions too) or an inline step over ``file`` — or, when
    ``spec`` is a list, each of those in turn as one chain. Relative paths in steps resolve
    against ``base_dir``. Raises ``ConfigError`` for a bad spec, and from the run
    ``DropEnvelope``, ``TransformError`` or ``TransientTransformError`` (each naming the
    step)."""
    try:
        ct, data = read_file(file, content_type)
    except PayloadError as exc:
        raise ConfigError([f"{file}: {exc}"]) from None
    specs = [spec] if isinstance(spec, str) else list(spec)
    steps = [step for one in specs for step in steps_for(one, base_dir=base_dir)]
    single = specs[0] if len(specs) == 1 and inline_step(specs[0]) is None else ""
    # The command line is the operator's own: its stylesheets need not lie in the
    # configuration folder (a route's must).
    chain = build_chain(steps, base_dir=base_dir, named=named, confine=False,
                        where=Path(single).name if Path(single).suffix else "transform")
    env = Envelope(source=source, type=type, datacontenttype=ct, data=data, subject=file.name)
    return chain(env)
