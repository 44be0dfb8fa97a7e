"""Running a worked example (``examples/<name>``) the way its README does: a copy of the
folder, ``esb run`` inside it, on the suite's RabbitMQ under a prefix of its own, with the
example's fake peers on free ports."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from esb.adapters.testing.peers import PeerServer
from esbtest.broker import RabbitScope
from esbtest.daemon import DaemonProcess


def load_fakes(example: Path) -> ModuleType:
    """The example's ``fakes.py``, imported as ``<example>_fakes`` (every example has one)."""
    name = example.name.replace("-", "_") + "_fakes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, example / "fakes.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules[name]


def route_cases(example: Path) -> subprocess.CompletedProcess[str]:
    """``esb routes test routes/`` in the example's folder, as its README says."""
    return subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "routes", "test",
                           "routes/", "--config", "config/esb.yaml"], cwd=example,
                          capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def example_peers(apps: Mapping[str, tuple[Any, bool]]) -> Iterator[dict[str, str]]:
    """Serve ``{name: (app, is_wsgi)}`` on free ports; yields ``{name: base URL}``."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(PeerServer(app, wsgi=wsgi)).url
               for name, (app, wsgi) in apps.items()}


class ExampleProject:
    """A copy of an example folder in ``root`` with a started daemon (``self.daemon``)."""

    def __init__(self, example: Path, root: Path, bus_url: str, destinations: Iterable[str],
                 env: Mapping[str, str]) -> None:
        self.root = root / example.name
        shutil.copytree(example, self.root, ignore=shutil.ignore_patterns(
            ".esb", "__pycache__"))
        self.scope = RabbitScope(bus_url)
        self.scope.bus(*destinations)
        self.daemon = DaemonProcess(self.root, None, env={
            "ESB_BUS_URL": bus_url, "ESB_BUS_PREFIX": self.scope.prefix, **env})

    def __enter__(self) -> ExampleProject:
        try:
            self.daemon.start(timeout=60)  # (one that does not come up is stopped)
        except BaseException:
            with contextlib.suppress(Exception):
                self.scope.cleanup()  # __exit__ is not called when __enter__ raises
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        with contextlib.suppress(Exception):
            self.scope.cleanup()
