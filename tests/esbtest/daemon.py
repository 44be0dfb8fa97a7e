"""Run ``esb run`` as a real subprocess in a project folder of its own: the test kit's
:class:`~esb.adapters.testing.daemon.EsbDaemon` with the suite's admin token and a longer
default drain."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Self

from esb.adapters.testing.daemon import EsbDaemon

ADMIN_TOKEN = "test-admin-token"


class DaemonProcess(EsbDaemon):
    """A daemon in ``root`` (its cwd), with ``config/esb.yaml`` and ``routes/`` written there.
    ``run_args`` are added to ``esb run`` (e.g. ``["--workers", "2"]``); ``python`` is the
    interpreter that runs it (e.g. an :mod:`esbtest.venv` overlay with a plugin installed)."""

    def __init__(self, *args: Any, admin_token: str = ADMIN_TOKEN,
                 run_args: Sequence[str] = (), python: str = sys.executable,
                 **kw: Any) -> None:
        super().__init__(*args, admin_token=admin_token, **kw)
        self.run_args = list(run_args)
        self.python = python

    # A minute to become ready: a starting daemon is mostly imports, which take many times
    # longer on a machine the whole suite (and more) is loading.
    def start(self, wait: bool = True, timeout: float = 60) -> Self:
        if not self.run_args and self.python == sys.executable:
            return super().start(wait, timeout)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [self.python, "-m", "esb.bus.cli.main", "run", *self.run_args],
                cwd=self.root, env=self.env, stdout=log, stderr=log)
        if wait:
            self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 60) -> int:
        return super().stop(timeout)


def start_fleet(daemons: Sequence[DaemonProcess], timeout: float = 60) -> list[DaemonProcess]:
    """Start several daemons on one bus prefix: the first alone (on a fresh prefix it seeds
    the route store; started together, each would find the store empty and seed it), then
    the others at once, each ready when this returns."""
    first, *others = daemons
    first.start(timeout=timeout)
    for d in others:
        d.start(wait=False)
    for d in others:
        d.wait_ready(timeout)
    return list(daemons)
