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
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
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


def import_module(name: str, config_dir: Path | None = None) -> ModuleType:
    """Import ``name`` from the installed packages, else from ``config_dir`` (the
    configuration folder: a step's module can sit beside the configuration without being
    installed or named in ``PYTHONPATH``). Raises ImportError saying where it looked."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".", 1)[0]
        if config_dir is None or exc.name != top:
            raise
        spec = importlib.machinery.PathFinder.find_spec(top, [str(config_dir)])
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(
                f"no module named {top!r} among the installed packages or in the "
                f"configuration folder {config_dir}", name=top) from None
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module  # as an import would: the module's own imports find it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise
    return importlib.import_module(name)


def load_function(ref: str, config_dir: Path | None = None) -> UserFunction:
    """Import ``module:function`` (dots allowed after the colon; the module installed or in
    ``config_dir``) or load an entry point."""
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
        obj: Any = import_module(module_name, config_dir)
    except ImportError as exc:
        where = ("" if config_dir is None or "configuration folder" in str(exc) else
                 f" (a step's module is imported from the installed packages or the "
                 f"configuration folder {config_dir})")
        raise ConfigError([f"function {ref!r}: cannot import {module_name!r}: {exc}{where}"]
                          ) from None
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
    return wrap_function(ctx.name, load_function(settings.function, ctx.base_dir))


SPEC = TransformerSpec(
    name="python",
    summary="Call a Python function (module:function) on each envelope",
    settings=PythonSettings,
    factory=make_python,
    shorthand="function",
)
