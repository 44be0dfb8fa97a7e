"""The ``jmespath`` transformer: reshape a JSON payload with a JMESPath expression."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jmespath
from jmespath.exceptions import JMESPathError

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, DropEnvelope, TransformError
from esb.transformers.payload import json_input, with_json
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec


class JmespathSettings(TransformerSettings):
    """Options of ``jmespath``."""

    expression: str
    #: What a ``null`` result means: keep it as the data, fail the step, or drop the envelope.
    on_null: Literal["keep", "error", "drop"] = "keep"


def make_projection(settings: JmespathSettings, ctx: TransformerContext
                    ) -> Callable[[Envelope], Envelope]:
    """Factory: compile the expression once."""
    try:
        compiled = jmespath.compile(settings.expression)
    except JMESPathError as exc:
        raise ConfigError([f"expression does not compile: {exc}"]) from None
    name = ctx.name

    def project(env: Envelope) -> Envelope:
        try:
            result = compiled.search(json_input(name, env))
        except JMESPathError as exc:
            raise TransformError(name, f"expression failed: {exc}") from None
        if result is None and settings.on_null != "keep":
            if settings.on_null == "drop":
                raise DropEnvelope(f"{name}: expression matched nothing")
            raise TransformError(name, "expression matched nothing (null)")
        return with_json(env, result)

    return project


SPEC = TransformerSpec(
    name="jmespath",
    summary="Reshape a JSON payload with a JMESPath expression",
    settings=JmespathSettings,
    factory=make_projection,
    shorthand="expression",
)
