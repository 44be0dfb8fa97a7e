"""The transformer contract.

A transformer is a callable ``Envelope -> Envelope``: options are taken once when it is built
(compile the stylesheet, load the schema), the work happens in ``__call__``. A chain is a plain
loop over such callables. A step signals failure by raising
:class:`~esb.bus.errors.TransformError` (permanent: the envelope is dead-lettered with the step's
name) and filters an envelope out on purpose by raising :class:`~esb.bus.errors.DropEnvelope`.

An ``esb.transformers`` entry point names a :class:`TransformerSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from esb.bus.envelope import Envelope
from esb.bus.xmlsafe import DEFAULT_LIMITS, XmlLimits
from esb.transformers.sandbox import confined

Transformer = Callable[[Envelope], Envelope]


class TransformerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TransformerContext:
    """Handed to a factory: the step's name, the folder relative paths resolve against, and
    the bounds on any XML the step parses (``limits.xml``)."""

    name: str
    base_dir: Path
    xml_limits: XmlLimits = DEFAULT_LIMITS
    #: Files the step names must lie inside ``base_dir`` (off only for the command line's
    #: own files, ``esb transform``).
    confine: bool = True

    def path(self, name: str | Path, what: str) -> Path:
        """The file ``name`` names, resolved against :attr:`base_dir` (and confined to it)."""
        if self.confine:
            return confined(self.base_dir, name, what)
        return (self.base_dir / name).resolve()


@dataclass(frozen=True)
class TransformerSpec:
    name: str
    summary: str
    settings: type[TransformerSettings]
    factory: Callable[[Any, TransformerContext], Transformer]
    #: The settings field a scalar fills in route files: ``{xslt: path}`` → ``stylesheet``.
    shorthand: str | None = None
