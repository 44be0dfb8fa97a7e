"""The ``python`` transformer: call a plain function on each envelope.

The function receives the :class:`~esb.bus.envelope.Envelope` and returns either an envelope or
the new data (``dict``/``list``/number/bool → JSON, ``str`` → text in the envelope's text
content type, ``bytes`` → binary). It may raise ``DropEnvelope`` (filtered out),
``TransformError`` or ``PermanentError`` (dead-lettered, with the step's name) or
``TransientError`` (tried again later); the chain names the step in each error, and wraps
anything else as a ``TransformError``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, TransformError
from esb.bus.payload import JSON, is_json
from esb.bus.plugins import transformers as transformer_registry
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec

UserFunction = Callable[[Envelope], Any]


class PythonSettings(TransformerSettings):
    """Options of ``python``."""

    #: ``"package.module:function"``, or the name of an ``esb.transformers`` entry point that
    #: is a plain function.
    function: str


def load_function(ref: str) -> UserFunction:
    """Import ``module:function`` (dots allowed after the colon) or load an entry point."""
    module_name, sep, attr = ref.partition(":")
    if not sep:
        registry = transformer_registry()
        if ref not in registry:
            raise ConfigError([f"function {ref!r}: expected 'module:function' or the name of an "
                               "esb.transformers entry point"])
        obj = registry.get(ref)
        if isinstance(obj, TransformerSpec) or not callable(obj):
            raise ConfigError([f"entry point {ref!r} is not a plain function"])
        return obj
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError([f"function {ref!r}: cannot import {module_name!r}: {exc}"]) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError([f"function {ref!r}: {module_name!r} has no attribute {attr!r}"])
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError([f"function {ref!r} is not callable"])
    return obj


def adopt_result(step: str, env: Envelope, result: Any) -> Envelope:
    """The envelope a user function's return value stands for."""
    if isinstance(result, Envelope):
        return result
    if result is None:
        raise TransformError(step, "function returned None; return the envelope or new data, "
                                   "or raise DropEnvelope to filter it out")
    current = env.datacontenttype
    if isinstance(result, str):
        ct = current if current and not is_json(current) else "text/plain"
    elif isinstance(result, bytes):
        ct = current if current and not is_json(current) else "application/octet-stream"
    else:
        ct = JSON
    return env.model_copy(update={"data": result, "datacontenttype": ct})


def wrap_function(step: str, fn: UserFunction) -> Callable[[Envelope], Envelope]:
    """A transformer calling ``fn`` and adopting its result."""

    def call(env: Envelope) -> Envelope:
        return adopt_result(step, env, fn(env))

    call.__name__ = getattr(fn, "__name__", step)
    return call


def make_python(settings: PythonSettings, ctx: TransformerContext
                ) -> Callable[[Envelope], Envelope]:
    """Factory of ``python``: resolve the function once."""
    return wrap_function(ctx.name, load_function(settings.function))


SPEC = TransformerSpec(
    name="python",
    summary="Call a Python function (module:function) on each envelope",
    settings=PythonSettings,
    factory=make_python,
    shorthand="function",
)
