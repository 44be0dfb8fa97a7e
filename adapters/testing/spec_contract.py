"""The part of the adapter contract that needs no peer: the spec itself is well-formed.

Shared by :class:`~esb.adapters.testing.OutboundContract` and
:class:`~esb.adapters.testing.InboundContract`, together with the small harness every contract
test runs in (one fresh event loop per test, ``self.tmp_path`` set, a deadline).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from esb.adapters.spec import AdapterSpec

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_UNKNOWN_KEY = "surely_not_a_setting"


async def eventually(check: Callable[[], Any], timeout: float, message: str,
                     interval: float = 0.02) -> None:
    """Wait until ``check()`` (plain or async) is truthy; fail with ``message`` after
    ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await maybe_await(check()):
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{message} (waited {timeout:g}s)", pytrace=False)
        await asyncio.sleep(interval)


class SpecContract:
    """Checks on ``spec`` alone. Subclasses name the direction they test in ``direction``."""

    #: The adapter's spec: what its ``esb.adapters`` entry point names.
    spec: ClassVar[AdapterSpec]
    #: Settings of the side under test, as they would appear in ``esb.yaml`` (minus
    #: ``adapter``). Relative paths resolve against ``self.tmp_path`` (the config folder).
    settings: ClassVar[dict[str, Any]] = {}
    #: Seconds one contract test may take before it fails.
    test_timeout: ClassVar[float] = 30.0
    direction: ClassVar[str] = ""

    tmp_path: Path

    # -- harness ------------------------------------------------------------------------------

    def run_async(self, tmp_path: Path, scenario: Callable[[], Coroutine[Any, Any, None]]
                  ) -> None:
        """Run one scenario in a fresh event loop with ``self.tmp_path`` set."""
        self.tmp_path = tmp_path
        self.prepare()

        async def bounded() -> None:
            try:
                await asyncio.wait_for(scenario(), self.test_timeout)
            except TimeoutError:
                pytest.fail(f"the contract test did not finish within {self.test_timeout:g}s",
                            pytrace=False)

        asyncio.run(bounded())

    def prepare(self) -> None:
        """Hook: called before every contract test, once ``self.tmp_path`` (which is also the
        context's ``config_dir``) exists. Write the files your settings refer to here
        (a layout, a WSDL, a schema ...). Default: nothing."""

    def _model(self) -> type[BaseModel]:
        model = getattr(self.spec, f"{self.direction}_settings", None)
        assert model is not None, f"spec {self.spec.name!r} has no {self.direction}_settings"
        return model

    # -- the tests ----------------------------------------------------------------------------

    def test_spec_is_well_formed(self) -> None:
        spec = self.spec
        assert isinstance(spec, AdapterSpec), \
            f"spec must be an esb.adapters.spec.AdapterSpec, not {type(spec).__name__}"
        assert _NAME.match(spec.name), \
            f"adapter name {spec.name!r}: lowercase letters, digits, - and _, starting a-z"
        assert spec.summary.strip() and "\n" not in spec.summary.strip(), \
            "summary: one non-empty line (shown by `esb adapters list`)"
        assert spec.directions, "the spec has neither an inbound nor an outbound factory"
        assert spec.inbound_mode in ("every-instance", "one-instance"), \
            f"inbound_mode {spec.inbound_mode!r}: 'every-instance' or 'one-instance'"
        assert self.direction in spec.directions, \
            f"spec {spec.name!r} has no {self.direction} factory (directions: {spec.directions})"
        for direction in ("inbound", "outbound"):
            factory = getattr(spec, direction)
            model = getattr(spec, f"{direction}_settings")
            assert (factory is None) == (model is None), \
                f"{direction}: a factory needs a settings model and the reverse"
            if factory is not None:
                assert callable(factory), f"{direction} factory is not callable"
                assert isinstance(model, type) and issubclass(model, BaseModel), \
                    f"{direction}_settings must be a pydantic model class"

    def test_settings_validate_and_forbid_unknown_keys(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.prepare()
        model = self._model()
        assert model.model_config.get("extra") == "forbid", \
            (f"{model.__name__} must forbid unknown keys (subclass "
             "esb.adapters.spec.AdapterSettings), or a typo in esb.yaml goes unnoticed")
        model.model_validate(self.base_settings())
        with pytest.raises(ValidationError) as info:
            model.model_validate({**self.base_settings(), _UNKNOWN_KEY: 1})
        assert any(e["type"] == "extra_forbidden" for e in info.value.errors()), \
            f"{model.__name__} accepted the unknown key {_UNKNOWN_KEY!r}"

    def test_entry_point_names_this_spec(self) -> None:
        points = [ep for ep in entry_points(group="esb.adapters") if ep.name == self.spec.name]
        if not points:
            pytest.skip(f"no installed esb.adapters entry point named {self.spec.name!r} "
                        "(install the package to check it)")
        assert points[0].load() is self.spec, \
            (f"entry point {self.spec.name!r} = {points[0].value} names another object; "
             "the entry point name must equal spec.name")

    def base_settings(self) -> dict[str, Any]:
        """Hook: the settings the spec checks validate. Default: ``settings``."""
        return dict(self.settings)


async def maybe_await(value: Awaitable[Any] | Any) -> Any:
    """``await`` the value when it is awaitable (hooks may be plain or async)."""
    return await value if inspect.isawaitable(value) else value


async def leftover_tasks(before: set[asyncio.Task[Any]], grace: float = 1.0
                         ) -> list[asyncio.Task[Any]]:
    """Tasks started since ``before`` that are still running after ``grace`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    current = asyncio.current_task()
    while True:
        left = [t for t in asyncio.all_tasks() if t not in before and t is not current
                and not t.done()]
        if not left or loop.time() > deadline:
            return left
        await asyncio.sleep(0.02)


def describe_tasks(tasks: list[asyncio.Task[Any]]) -> str:
    return ", ".join(f"{t.get_name()} ({t.get_coro()!r})" for t in tasks)
