"""Suite-wide fixtures: the real RabbitMQ (a missing broker fails the run, never skips),
per-test name prefixes on it, recording HTTP destinations and daemon subprocesses."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from esbtest.broker import RabbitScope, broker_problem, bus_url
from esbtest.daemon import DaemonProcess
from esbtest.sink import Sink


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    url = bus_url()
    problem = broker_problem(url)
    if problem:
        pytest.fail(f"{problem}. The suite needs a real RabbitMQ (set ESB_TEST_BUS_URL); "
                    "start one with `rabbitmq-server -detached`.", pytrace=False)
    return url


@pytest.fixture
def rabbit(rabbit_url: str) -> Iterator[RabbitScope]:
    """A fresh queue-name prefix on the shared broker, removed afterwards."""
    scope = RabbitScope(rabbit_url)
    yield scope
    with contextlib.suppress(Exception):  # clean-up must not mask the test's own result
        scope.cleanup()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    made: list[DaemonProcess] = []

    def make(config: dict[str, Any], routes: dict[str, Any] | None = None,
             name: str = "d", **kw: Any) -> DaemonProcess:
        d = DaemonProcess(tmp_path / name, config, routes, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop(timeout=30)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the crash soak at full size (20,000 messages, 30 s outage)")
