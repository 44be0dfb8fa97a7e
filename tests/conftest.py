"""Suite-wide fixtures: the real RabbitMQ (a missing broker fails the run, never skips),
per-test name prefixes on it, recording HTTP destinations and daemon subprocesses."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from esbtest import strength
from esbtest.broker import RUN_TAG_VARIABLE, RabbitScope, broker_problem, bus_url, sweep
from esbtest.daemon import DaemonProcess
from esbtest.proxy import TcpProxy
from esbtest.sink import Sink

from esb.adapters.testing.daemon import daemon_factory as kit_daemon_factory

try:  # pytest >= 9.2 builds a test's id from ``item._id`` (see _GroupSuffix)
    from _pytest.nodeid import NodeId
except ImportError:  # older pytest: xdist's own group suffix works there
    NodeId = None


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    url = bus_url()
    problem = broker_problem(url)
    if problem:
        pytest.fail(f"{problem}. The suite needs a real RabbitMQ (set ESB_TEST_BUS_URL); "
                    "start one with `rabbitmq-server -detached`.", pytrace=False)
    return url


#: The broker scopes a test made, removed once all of its fixtures are torn down.
_SCOPES = pytest.StashKey[list[RabbitScope]]()


@pytest.fixture
def rabbit(rabbit_url: str, request: pytest.FixtureRequest) -> RabbitScope:
    """A fresh queue-name prefix on the shared broker, removed after the test — after every
    fixture's teardown, so a daemon still running then cannot declare its queues again."""
    scope = RabbitScope(rabbit_url)
    request.node.stash.setdefault(_SCOPES, []).append(scope)
    return scope


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    for scope in item.stash.get(_SCOPES, []):
        with contextlib.suppress(Exception):  # clean-up must not mask the test's own result
            scope.cleanup()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def proxy(rabbit_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the shared broker (``proxy.amqp_url``): cut it, refuse
    connections or make it silent without touching the broker."""
    p = TcpProxy.for_broker(rabbit_url)
    yield p
    p.close()


@contextlib.contextmanager
def _stopping_together(make: Callable[..., DaemonProcess]
                       ) -> Iterator[Callable[..., DaemonProcess]]:
    """``make``, remembering what it made; on exit every daemon still running is sent SIGTERM
    at once, so they drain together while the kit's factory waits for each in turn (a second
    SIGTERM, the kit's own, only asks again)."""
    made: list[DaemonProcess] = []

    def tracked(*args: Any, **kw: Any) -> DaemonProcess:
        made.append(daemon := make(*args, **kw))
        return daemon

    try:
        yield tracked
    finally:
        for daemon in made:
            if daemon.proc is not None and daemon.proc.poll() is None:
                with contextlib.suppress(OSError):
                    daemon.proc.send_signal(signal.SIGTERM)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    with kit_daemon_factory(tmp_path, DaemonProcess, stop_timeout=30) as make, \
            _stopping_together(make) as tracked:
        yield tracked


# Module-scoped twins, for a daemon (and its peers) that the tests of a module share: the tests
# using them run on one worker, so the daemon starts once (tests/README.md, "Sharing an
# expensive resource").

@pytest.fixture(scope="module")
def module_rabbit(rabbit_url: str) -> Iterator[RabbitScope]:
    scope = RabbitScope(rabbit_url)
    yield scope
    with contextlib.suppress(Exception):
        scope.cleanup()


@pytest.fixture(scope="module")
def module_sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def module_daemon_factory(tmp_path_factory: pytest.TempPathFactory,
                          ) -> Iterator[Callable[..., DaemonProcess]]:
    with kit_daemon_factory(tmp_path_factory.mktemp("daemons"), DaemonProcess,
                            stop_timeout=30) as make, _stopping_together(make) as tracked:
        yield tracked


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two per CPU, at most 8 (most tests wait on a daemon, a broker or a
    socket, not on the CPU; at three per CPU the private cluster's nodes were starved into
    failing its tests), less two per CPU that other processes keep busy right now (on a
    shared machine more workers would only add timeouts), but at least 2. What is busy is
    measured over a moment, not read from the load average, which still counts the install
    that ran just before. Test files (or test ids) named on the command line run in this
    process: starting workers costs more than it saves there (``-n N`` still asks for N).
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides."""
    wanted = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if wanted:
        return int(wanted)
    named = [arg.split("::", 1)[0] for arg in config.args]
    if named and all(arg.endswith(".py") for arg in named):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    most = min(8, 2 * (cpus or 1))
    return max(2, most - 2 * round(_busy_cpus()))


def _busy_cpus(moment: float = 0.5) -> float:
    """How many CPUs other processes kept busy over ``moment`` seconds (0 where
    ``/proc/stat`` cannot be read)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle
    try:
        total0, idle0 = sample()
        time.sleep(moment)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    ticks = (total1 - total0) or 1
    cpus = os.cpu_count() or 1
    return cpus * (1 - (idle1 - idle0) / ticks)


#: xdist groups that take the longest wall time (a private RabbitMQ cluster, several minutes on
#: one worker): handed out before every other test, so they run alongside the rest of the suite
#: instead of after it. A group's name is its module's path (``pytest_collection_modifyitems``).
FIRST_GROUPS = ("tests/e2e/test_cluster.py",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` as xdist does it, except that :data:`FIRST_GROUPS` go first (xdist
    orders the groups by their number of tests, which says nothing of how long they take)."""
    if getattr(config.option, "dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class LongestFirst(LoadGroupScheduling):
        def _assign_work_unit(self, node: Any) -> None:
            for scope in [s for s in self.workqueue if s in FIRST_GROUPS]:
                self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)


def pytest_report_header(config: pytest.Config) -> str:
    return f"PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED', 'random')} (set it to repeat a run)"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the crash soak at full size (20,000 messages, 30 s outage), "
                          "property tests with all their examples and longer fuzz runs "
                          "(esbtest/strength.py)")


def pytest_configure(config: pytest.Config) -> None:
    strength.LONG = config.getoption("--long")  # read when the test modules are imported
    if not hasattr(config, "workerinput"):  # the controller, before it starts the workers
        # One hash seed for every worker of a run (a new one each run), so they collect the
        # same test ids even when an id comes from a set; xdist refuses the run otherwise.
        os.environ.setdefault("PYTHONHASHSEED", str(random.randrange(1, 2**32)))
        _share_bytecode(config)
        os.environ.setdefault(RUN_TAG_VARIABLE, secrets.token_hex(2))
    config.addinivalue_line(
        "markers", "long_timeout(seconds): the test's timeout when --long is given (the "
                   "suite's own timeout otherwise)")
    if hasattr(config, "workerinput"):
        config.pluginmanager.register(_GroupSuffix(), "esb-xdist-group-suffix")


class _GroupSuffix:
    """On an xdist worker under ``--dist loadgroup``: make sure every test of an
    ``xdist_group`` carries the group in its id (``path::name@group``), which is all the
    scheduler sees of it. xdist writes the suffix into ``item._nodeid``; pytest 9.2 builds
    ``nodeid`` from ``item._id`` instead, so there the suffix is lost — and every group's
    tests are spread over the workers, each making the module's shared daemon (or cluster)
    of its own, again whenever its tests are interleaved with another module's."""

    @pytest.hookimpl(trylast=True)  # after xdist's own attempt
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        if not config.getvalue("loadgroup"):
            return
        for item in items:
            names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                            for m in item.iter_markers("xdist_group")})
            if not names or "@" in item.nodeid:
                continue
            grouped = f"{item.nodeid}@{'_'.join(names)}"
            if NodeId is not None and isinstance(getattr(item, "_id", None), NodeId):
                item._id = NodeId.parse(grouped)
            else:
                item._nodeid = grouped  # type: ignore[attr-defined]


#: The run's bytecode cache folder, removed when the run ends.
_PYCACHE = pytest.StashKey[str]()


def _share_bytecode(config: pytest.Config) -> None:
    """Where the environment forbids writing bytecode (``PYTHONDONTWRITEBYTECODE``, so that
    no ``__pycache__`` lands in the source tree), every daemon and CLI subprocess the suite
    starts would compile esb's modules again: ~0.4 s of CPU per start, hundreds of starts.
    The run's processes share one cache in a temporary folder instead (``PYTHONPYCACHEPREFIX``,
    outside the tree), removed at the end. A prefix the user set is left alone."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    folder = tempfile.mkdtemp(prefix="esb-test-pycache-")
    config.stash[_PYCACHE] = folder
    os.environ["PYTHONPYCACHEPREFIX"] = folder
    del os.environ["PYTHONDONTWRITEBYTECODE"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller removes whatever the run left on the shared broker (see
    :func:`esbtest.broker.sweep`)."""
    if hasattr(session.config, "workerinput"):
        return
    with contextlib.suppress(Exception):  # clean-up must not change the run's outcome
        sweep(bus_url(), os.environ.get(RUN_TAG_VARIABLE, ""))


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_PYCACHE, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test using a module-scoped fixture joins its module's ``xdist_group`` (unless it has
    one), so the module's tests run on one worker and the fixture is made once.

    Under --long, a test marked ``long_timeout(s)`` gets ``timeout(s)`` instead of the
    suite's 300 s (pytest-timeout reads the marker when the test runs)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None and uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    if not config.getoption("--long"):
        return
    for item in items:
        marker = item.get_closest_marker("long_timeout")
        if marker is not None:
            item.add_marker(pytest.mark.timeout(marker.args[0]), append=False)


def uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values())
