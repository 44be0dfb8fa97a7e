"""Building transformer chains from route/config step lists.

A step is written as::

    - to-canonical-order                      # a named definition, or a transformer without options
    - xslt: config/xslt/a.xsl                 # shorthand (the spec's ``shorthand`` option)
    - xslt: {stylesheet: a.xsl, params: {x: 1}}
    - python: mypkg.mod:func
    - mypkg.mod:func                          # the same: a bare module:function is a python step

A named definition is itself a step, or a list of steps (inlined; its steps are named
``definition/transformer``). Every problem is collected before :class:`ConfigError` is raised,
each prefixed with where it is (``transform[1].xslt: ...``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from esb.bus.envelope import Envelope
from esb.bus.errors import (
    ConfigError,
    DropEnvelope,
    TransformError,
    TransientError,
    TransientTransformError,
)
from esb.bus.plugins import Registry
from esb.bus.plugins import transformers as default_registry
from esb.bus.xmlsafe import DEFAULT_LIMITS, XmlLimits
from esb.transformers.python import wrap_function
from esb.transformers.spec import Transformer, TransformerContext, TransformerSpec

StepSpec = str | Mapping[str, Any]
#: Called after each step that succeeded, with its name and duration in seconds.
StepHook = Callable[[str, float], None]
#: The transformer a bare ``module:function`` step stands for.
PYTHON_STEP = "python"
T = TypeVar("T")


class Chain:
    """Envelope → envelope through each step in order; the empty chain is the identity.

    ``DropEnvelope`` and ``TransformError`` pass through. A ``TransientError`` becomes a
    ``TransientTransformError`` naming the step (the caller retries); anything else, a
    ``PermanentError`` included, becomes a ``TransformError`` naming the step (dead-lettered).
    ``on_step``, when given, is called after each step that succeeded (name, seconds taken).

    Called, the chain runs every step in the caller's thread; awaited (:meth:`run`), a step
    that :attr:`waits` on another process is awaited instead, so the event loop serves other
    work meanwhile: its ``call_async(env)`` when it has one (XSLT in its sandbox process),
    else the step in a thread. Steps that are only CPU work run in place either way.
    """

    def __init__(self, steps: Sequence[tuple[str, Transformer]] = ()) -> None:
        self._steps = tuple(steps)
        #: Per step: what awaits it on the event loop, or None (it runs in place).
        self._awaited = tuple(_awaited(step) for _, step in self._steps)
        #: Whether a step waits on another process (``waits = True`` on the step, e.g. an
        #: XSLT transform in its sandbox process): on an event loop, :meth:`run` the chain.
        #: (Fixed with the steps: read on every request/reply answer, so computed once.)
        self.waits = any(a is not None for a in self._awaited)

    @property
    def steps(self) -> list[str]:
        """The step names, in order."""
        return [name for name, _ in self._steps]

    def __len__(self) -> int:
        return len(self._steps)

    def __call__(self, env: Envelope, on_step: StepHook | None = None) -> Envelope:
        return completed(self.run(env, on_step, awaiting=False))

    async def run(self, env: Envelope, on_step: StepHook | None = None, *,
                  awaiting: bool = True) -> Envelope:
        """The chain on ``env``, the steps that wait awaited (``awaiting``; without it, the
        coroutine never suspends: see :func:`completed`)."""
        clock = time.perf_counter
        for (name, step), awaited in zip(self._steps, self._awaited, strict=True):
            started = clock() if on_step is not None else 0.0
            try:
                env = await awaited(env) if awaiting and awaited is not None else step(env)
            except (DropEnvelope, TransformError, TransientTransformError):
                raise
            except TransientError as exc:
                raise TransientTransformError(name, str(exc),
                                              retry_after=exc.retry_after) from exc
            except Exception as exc:
                raise TransformError(name, f"{type(exc).__name__}: {exc}") from exc
            if not isinstance(env, Envelope):
                raise TransformError(name, f"returned {type(env).__name__}, not an Envelope")
            if on_step is not None:
                on_step(name, clock() - started)
        return env

    def __repr__(self) -> str:
        return f"Chain({self.steps})"


def _awaited(step: Transformer) -> Callable[[Envelope], Awaitable[Envelope]] | None:
    """How :meth:`Chain.run` awaits ``step``: None for a step that does not wait."""
    if not getattr(step, "waits", False):
        return None
    call_async = getattr(step, "call_async", None)
    if call_async is not None:
        return call_async  # type: ignore[no-any-return]
    return lambda env: asyncio.to_thread(step, env)


def completed(coro: Coroutine[Any, Any, T]) -> T:
    """The value of ``coro``, run to its end in this thread: for the synchronous side of
    code written once as a coroutine (a chain, a plan run with ``awaiting=False``), which
    never suspends."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a coroutine run synchronously waited for something")


@dataclass
class _Builder:
    base_dir: Path
    named: Mapping[str, StepSpec | Sequence[StepSpec]]
    registry: Registry
    xml_limits: XmlLimits = DEFAULT_LIMITS
    confine: bool = True
    problems: list[str] = field(default_factory=list)
    steps: list[tuple[str, Transformer]] = field(default_factory=list)

    def add(self, step: Any, where: str, prefix: str = "", exact: str | None = None,
            active: tuple[str, ...] = ()) -> None:
        """Add ``step``; its name is ``exact`` or ``prefix`` + the transformer name."""
        if isinstance(step, str):
            if step in self.named:
                self._named(step, where, prefix, active)
            elif ":" in step and step not in self.registry:
                # Neither a definition nor an entry point: a function reference.
                self._build(PYTHON_STEP, step, where, exact or prefix + step)
            else:
                self._build(step, None, where, exact or prefix + step)
        elif isinstance(step, Mapping) and len(step) == 1:
            ((kind, options),) = step.items()
            self._build(str(kind), options, where, exact or prefix + str(kind))
        else:
            self.problems.append(f"{where}: a step is a transformer name or a one-key mapping "
                                 f"{{name: options}}, got {_show(step)}")

    def _named(self, name: str, where: str, prefix: str, active: tuple[str, ...]) -> None:
        if name in active:
            self.problems.append(f"{where}: definition {name!r} refers to itself "
                                 f"({' -> '.join([*active, name])})")
            return
        body = self.named[name]
        if isinstance(body, Sequence) and not isinstance(body, str):
            for i, sub in enumerate(body):
                self.add(sub, f"{where}.{name}[{i}]", f"{prefix}{name}/", None, (*active, name))
        else:
            self.add(body, f"{where}.{name}", prefix, prefix + name, (*active, name))

    def _build(self, kind: str, options: Any, where: str, name: str) -> None:
        here = f"{where}.{kind}"
        try:
            spec = self.registry.get(kind)
        except ConfigError as exc:
            self.problems.extend(f"{here}: {p}" for p in exc.problems)
            return
        except Exception as exc:  # a plugin whose entry point fails to import
            self.problems.append(f"{here}: cannot load transformer: {type(exc).__name__}: {exc}")
            return
        if not isinstance(spec, TransformerSpec):
            # A plugin may register a plain function: it is a python step with no options.
            if options is not None:
                self.problems.append(f"{here}: {kind!r} is a plain function and takes no options")
            elif callable(spec):
                self.steps.append((name, wrap_function(name, spec)))
            else:
                self.problems.append(f"{here}: entry point is neither a spec nor a function")
            return
        settings = self._settings(spec, options, here)
        if settings is None:
            return
        try:
            transformer = spec.factory(settings, TransformerContext(
                name, self.base_dir, self.xml_limits, confine=self.confine))
        except ConfigError as exc:
            self.problems.extend(f"{here}: {p}" for p in exc.problems)
            return
        except Exception as exc:
            self.problems.append(f"{here}: {type(exc).__name__}: {exc}")
            return
        self.steps.append((name, transformer))

    def _settings(self, spec: TransformerSpec, options: Any, here: str) -> Any:
        if options is None:
            options = {}
        elif not isinstance(options, Mapping):
            if spec.shorthand is None:
                self.problems.append(f"{here}: takes no shorthand value; write "
                                     f"{{{spec.name}: {{option: value}}}}")
                return None
            options = {spec.shorthand: options}
        try:
            return spec.settings.model_validate(dict(options))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "options"
                self.problems.append(f"{here}: option {loc!r}: {err['msg']}")
            return None


def build_chain(steps: Sequence[StepSpec], *, base_dir: Path,
                named: Mapping[str, StepSpec | Sequence[StepSpec]] | None = None,
                registry: Registry | None = None, where: str = "transform",
                xml_limits: XmlLimits = DEFAULT_LIMITS, confine: bool = True) -> Chain:
    """Build every step (compiling stylesheets, loading schemas) or raise ``ConfigError``
    listing every problem found."""
    builder = _Builder(base_dir, named or {}, registry or default_registry(),
                       xml_limits=xml_limits, confine=confine)
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence):
        raise ConfigError([f"{where}: expected a list of steps, got {_show(steps)}"])
    for i, step in enumerate(steps):
        builder.add(step, f"{where}[{i}]")
    if builder.problems:
        raise ConfigError(builder.problems)
    return Chain(builder.steps)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

