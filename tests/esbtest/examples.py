"""Running a worked example (``examples/<name>``) the way its README does: a copy of the
folder, ``esb run`` inside it, on the suite's RabbitMQ under a prefix of its own, with the
example's fake peers on free ports."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from esb.adapters.testing.peers import PeerServer
from esbtest.broker import RabbitScope
from esbtest.daemon import DaemonProcess


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
        self.daemon.start(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        with contextlib.suppress(Exception):
            self.scope.cleanup()
