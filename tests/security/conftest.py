"""Hostile-input tests: one module per class of attack, each against one shared daemon where
it can (a daemon per test would not fit the suite's time budget)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from esbtest.daemon import DaemonProcess
from esbtest.sink import Sink

from esb.adapters.testing.daemon import daemon_factory


@pytest.fixture(scope="module")
def module_sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def module_daemons(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., DaemonProcess]]:
    """``make(config, routes, **kw)`` → an unstarted daemon that lives for the module."""
    root: Path = tmp_path_factory.mktemp("security")
    with daemon_factory(root, DaemonProcess, stop_timeout=30) as make:
        yield make
