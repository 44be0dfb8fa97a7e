"""``esb adapters new NAME``: scaffold an installable adapter package with a passing test.

The package registers itself under the ``esb.adapters`` entry point with a real spec and one
example setting per side; its inbound ``start()`` and outbound ``send()`` raise
``NotImplementedError`` naming the package, the method to write and the guide. Its test passes
from the start: the spec loads through the entry point, the kit's ``SpecContract`` holds, the
settings refuse what they should and the stubs raise their clear error. The kit's conformance
suites are scaffolded too, in a test module that ``tests/conftest.py`` keeps out of collection
(``collect_ignore``) until the author has a working side and deletes that line.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

import click

DIRECTIONS = ("inbound", "outbound")
#: What one endpoint of each side is called in esb.yaml.
_ENDPOINTS = {"inbound": "source", "outbound": "destination"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def check_name(name: str, installed: list[str]) -> str | None:
    """Why ``name`` cannot be a new adapter's name, or ``None`` when it can."""
    if not _NAME.match(name):
        return (f"{name!r} is not a valid adapter name: use lowercase letters, digits and _, "
                "starting with a letter, at most 40 characters (e.g. 'mainframe_mq')")
    if keyword.iskeyword(name):
        return f"{name!r} is a Python keyword; pick another name"
    if name in installed:
        return (f"an adapter named {name!r} is already installed "
                "(see `esb adapters list`); pick another name")
    return None


def parse_directions(value: str) -> tuple[str, ...]:
    chosen = tuple(d.strip() for d in value.split(",") if d.strip())
    wrong = [d for d in chosen if d not in DIRECTIONS]
    if not chosen or wrong:
        raise click.BadParameter(f"{value!r}: a comma-separated list of inbound, outbound")
    return tuple(d for d in DIRECTIONS if d in chosen)


def scaffold(name: str, parent: Path, directions: tuple[str, ...]) -> Path:
    """Write ``parent/esb-adapter-NAME/``; returns its path. The folder must not exist."""
    root = parent / f"esb-adapter-{name.replace('_', '-')}"
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    values = {"name": name, "dist": f"esb-adapter-{name.replace('_', '-')}",
              "module": f"esb_adapter_{name}",
              "Name": "".join(part.capitalize() for part in name.split("_"))}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": _readme(directions),
        f"src/esb_adapter_{name}/__init__.py": INIT,
        f"src/esb_adapter_{name}/settings.py": _settings(directions),
        f"src/esb_adapter_{name}/spec.py": _spec(directions),
        f"tests/test_{name}.py": _test(directions),
        f"tests/test_{name}_conformance.py": _conformance(directions),
        "tests/conftest.py": CONFTEST,
    }
    if "inbound" in directions:
        files[f"src/esb_adapter_{name}/inbound.py"] = INBOUND
    if "outbound" in directions:
        files[f"src/esb_adapter_{name}/outbound.py"] = OUTBOUND
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
    return root


def register(adapters_group: click.Group) -> None:
    """Add ``new`` to the ``esb adapters`` group."""

    @adapters_group.command("new")
    @click.argument("name")
    @click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
                  default=Path("."), show_default=True, help="Where to create the package.")
    @click.option("--directions", default="inbound,outbound", show_default=True,
                  help="Sides to scaffold: inbound, outbound or both.")
    def adapters_new(name: str, parent: Path, directions: str) -> None:
        """Scaffold an installable adapter package NAME: stubs, and a test that passes."""
        from esb.bus.plugins import adapters as registry

        problem = check_name(name, registry().names())
        if problem:
            raise click.BadParameter(problem, param_hint="NAME")
        sides = parse_directions(directions)
        try:
            root = scaffold(name, parent, sides)
        except FileExistsError as exc:
            raise click.UsageError(f"{exc}; choose another --dir or remove it") from None
        click.echo(f"created {root}")
        click.echo(f"next:  python -m pip install -e {root} && python -m pytest {root}")


def _pick(directions: tuple[str, ...], inbound: str, outbound: str) -> list[str]:
    """The per-side template parts, in the order of ``DIRECTIONS``, each with its side's names
    filled in (:func:`_side`)."""
    return [_side({"inbound": inbound, "outbound": outbound}[d], d) for d in directions]


def _side(template: str, direction: str) -> str:
    """``template`` for one side: ``${side}``, ``${Side}`` and ``$endpoint`` (source or
    destination) filled in; the package's own names are left for :func:`scaffold`."""
    return Template(template).safe_substitute(side=direction, Side=direction.capitalize(),
                                              endpoint=_ENDPOINTS[direction])


def _import(module: str, names: list[str]) -> str:
    """``from module import (...)``, one name a line: the trailing comma keeps ruff's isort from
    joining it into a line that a long adapter name would make too long."""
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")\n"


def _settings(directions: tuple[str, ...]) -> str:
    parts = [SETTINGS_HEAD, *(_side(SETTINGS_SIDE, d) for d in directions)]
    return "\n\n\n".join(parts) + "\n"


def _spec(directions: tuple[str, ...]) -> str:
    sides = [_import(f"$module.{d}", [f"${{Name}}{d.capitalize()}"]) for d in directions]
    models = [f"${{Name}}{d.capitalize()}Settings" for d in directions]
    args = "".join(f"    {d}_settings=${{Name}}{d.capitalize()}Settings,\n"
                   f"    {d}=${{Name}}{d.capitalize()},\n" for d in directions)
    return (SPEC_HEAD + "".join(sides) + _import("$module.settings", models) + "\n"
            + SPEC_BODY + args + ")\n")


def _test(directions: tuple[str, ...]) -> str:
    kit = ["RecordingInboundContext"] if "inbound" in directions else []
    kit.append("SpecContract")
    if "outbound" in directions:
        kit += ["http_client", "outbound_context"]
    models = [f"${{Name}}{d.capitalize()}Settings" for d in directions]
    envelope = "from esb.bus.envelope import Envelope\n" if "outbound" in directions else ""
    imports = (TEST_IMPORTS.replace("KIT\n", _import("esb.adapters.testing", kit) + envelope)
               .replace("MODELS\n", _import("$module.settings", models)))
    parts = [TEST_DOC + imports + TEST_ENTRY_POINT,
             *_pick(directions, TEST_INBOUND, TEST_OUTBOUND)]
    return "\n\n\n".join(parts) + "\n"


def _conformance(directions: tuple[str, ...]) -> str:
    suites = ", ".join(f"{d.capitalize()}Contract" for d in directions)
    head = CONFORMANCE_HEAD.replace("SUITES", suites)
    return "\n\n".join([head, *_pick(directions, CONFORMANCE_INBOUND,
                                     CONFORMANCE_OUTBOUND)]) + "\n"


def _readme(directions: tuple[str, ...]) -> str:
    sides = "".join(_pick(directions, README_INBOUND, README_OUTBOUND))
    return README_HEAD + sides + README_TAIL


PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "esb adapter: $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["esb"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This entry point makes `adapter: $name` usable in esb.yaml (see `esb adapters list`).
[project.entry-points."esb.adapters"]
$name = "$module.spec:SPEC"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ruff]
line-length = 100
src = ["src"]

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF"]
ignore = ["RUF012"]

[tool.ruff.lint.isort]
known-first-party = ["$module"]
"""

README_HEAD = """\
# $dist

An esb adapter, scaffolded by `esb adapters new $name`.

    python -m pip install -e .   # registers `adapter: $name` (entry point group esb.adapters)
    python -m pytest             # passes from the start (see Tests below)

The entry point and the spec are real; the protocol is yours to write. Until it is, each side
raises `NotImplementedError` with a message naming this package and the method to write.

## What to write, in src/$module/

- `settings.py` — what `esb.yaml` may say about one endpoint. Each side starts with one
  example setting, `address`; replace it with yours. Unknown keys stay errors; give each field
  a `Field(description=...)`.
"""

README_INBOUND = """\
- `inbound.py` — `start()`: hand each input to `ctx.accept(envelope)` and acknowledge your
  peer only after it returned; on `BusError` tell the peer to retry and keep the input. A side
  that speaks HTTP serves `HttpRoute`s from `routes` instead of running a loop.
"""

README_OUTBOUND = """\
- `outbound.py` — `send(envelope)`: return once the peer accepted it; translate every
  driver error into `TransientError` (retry) or `PermanentError` (dead-letter), raised `from`
  the original.
"""

README_TAIL = """\
- `spec.py` — the `AdapterSpec` the entry point names: give it a one-line summary.

## Tests

`tests/test_$name.py` passes now. It checks that the entry point loads the spec, runs the
test kit's `SpecContract` (a well-formed spec; settings that validate and refuse unknown keys),
checks that a missing `address` is refused, and that each side raises its "not implemented"
error. Once a side works, delete its `test_*_is_not_implemented_yet`.

`tests/test_${name}_conformance.py` holds the kit's conformance suites, which prove the adapter
contract (one delivery per `send`, transient and permanent failures told apart, acknowledging
only after `accept`, clean `start`/`stop` ...). They need a working side and peer hooks written
for your protocol, so they are off: `tests/conftest.py` lists the file in `collect_ignore`, and
pytest does not collect it at all (nothing is skipped; it is simply not part of the run yet).
Write the hooks named in its docstrings, then delete that `collect_ignore` line: from then on
`python -m pytest` runs the conformance suites with the rest.

The authoring guide is docs/adapters.md ("Writing an adapter") in the esb repository.
"""

INIT = '''\
"""esb adapter ``$name`` (entry point group esb.adapters)."""
'''

SETTINGS_HEAD = '''\
"""Settings of the $name adapter.

What esb.yaml may say about one endpoint. Subclass ``AdapterSettings`` so unknown keys are
errors (listed with their file and line).
Give each field a ``Field(description=...)``: the reference docs are generated from it.
"""

from __future__ import annotations

from esb.adapters.spec import AdapterSettings
from pydantic import Field'''

SETTINGS_SIDE = '''\
class ${Name}${Side}Settings(AdapterSettings):
    """One $name $endpoint."""

    address: str = Field(min_length=1, description=(
        "Where the outside system is reached (an example setting: replace it with what "
        "this side needs)."))'''

INBOUND = '''\
"""Inbound side of the $name adapter.

What the outside system sends becomes envelopes handed to ``ctx.accept``. Not written yet:
``start()`` raises ``NotImplementedError``. The guide is "Writing an adapter" in esb's
docs/adapters.md ("Inbound: accept, then acknowledge").
"""

from __future__ import annotations

from esb.adapters.spec import HttpRoute, InboundContext

from $module.settings import (
    ${Name}InboundSettings,
)


class ${Name}Inbound:
    """One $name source."""

    def __init__(self, settings: ${Name}InboundSettings,
                 ctx: InboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        #: HTTP paths the daemon serves for this side; empty for a side that runs its own
        #: polling or consuming loop from ``start()``.
        self.routes: list[HttpRoute] = []

    async def start(self) -> None:
        """Start taking input: for each, build an ``Envelope``, ``await self.ctx.accept(...)``
        and acknowledge the peer only after it returned; on ``BusError`` tell the peer to
        retry and keep the input. Idempotent."""
        raise NotImplementedError(
            "$name inbound: implement start()"
            " (or serve HttpRoutes from `routes`)"
            " in $module/inbound.py"
            " — see 'Writing an adapter' in esb's docs/adapters.md")

    async def stop(self) -> None:
        """Cancel and await what ``start()`` started; prompt and idempotent."""
        return None
'''

OUTBOUND = '''\
"""Outbound side of the $name adapter.

An envelope becomes one call to the outside system. Not written yet: ``send()`` raises
``NotImplementedError``. The guide is "Writing an adapter" in esb's docs/adapters.md
("Outbound: send and error translation").
"""

from __future__ import annotations

from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope

from $module.settings import (
    ${Name}OutboundSettings,
)


class ${Name}Outbound:
    """One $name destination."""

    def __init__(self, settings: ${Name}OutboundSettings,
                 ctx: OutboundContext) -> None:
        self.settings = settings
        self.ctx = ctx  # resources are opened in start(), not here

    async def start(self) -> None:
        """Open connections; idempotent."""
        return None

    async def stop(self) -> None:
        """Release what ``start()`` opened (never ``ctx.http()``, the daemon's); idempotent."""
        return None

    async def send(self, envelope: Envelope) -> None:
        """Return once the peer accepted ``envelope``; otherwise raise ``TransientError``
        (retry) or ``PermanentError`` (dead-letter) from ``esb.bus.errors``, ``from`` the
        driver's exception. Send ``envelope.key`` wherever the protocol has room."""
        raise NotImplementedError(
            "$name outbound: implement send()"
            " in $module/outbound.py"
            " — see 'Writing an adapter' in esb's docs/adapters.md")
'''

SPEC_HEAD = '''\
"""Spec of the $name adapter: what its entry point names."""

from __future__ import annotations

from esb.adapters.spec import AdapterSpec

'''

SPEC_BODY = '''\
SPEC = AdapterSpec(
    name="$name",
    # One line for `esb adapters list`: what the adapter connects.
    summary="$name (scaffolded, not implemented yet)",
'''

TEST_DOC = '''\
"""Tests of the $name adapter before its protocol is written.

The entry point loads the spec, the settings validate and refuse what they should, and each
unwritten side says so clearly. ``SpecContract`` is esb's test kit (esb.adapters.testing).
Once a side works, delete its ``test_*_is_not_implemented_yet`` and turn on the conformance
suites (see README.md, Tests).
"""

'''

TEST_IMPORTS = '''\
from __future__ import annotations

import asyncio
from importlib.metadata import entry_points
from pathlib import Path

import pytest
KIT
from pydantic import ValidationError

MODELS
from $module.spec import SPEC

EXAMPLE_SETTINGS = {"address": "legacy-host:1414"}

'''

TEST_ENTRY_POINT = '''\

def test_the_entry_point_loads_this_spec() -> None:
    found = [ep for ep in entry_points(group="esb.adapters") if ep.name == SPEC.name]
    assert found, f"no esb.adapters entry point {SPEC.name!r}: python -m pip install -e ."
    assert found[0].load() is SPEC'''

TEST_SIDE = '''\
class Test${Name}${Side}Spec(SpecContract):
    """The kit's checks of the spec and the ${side} settings."""

    direction = "${side}"
    spec = SPEC
    settings = EXAMPLE_SETTINGS


def test_${side}_settings_refuse_a_missing_address() -> None:
    with pytest.raises(ValidationError, match="address"):
        ${Name}${Side}Settings.model_validate({})


'''

TEST_INBOUND = TEST_SIDE + '''\
def test_inbound_start_is_not_implemented_yet(tmp_path: Path) -> None:
    settings = ${Name}InboundSettings(**EXAMPLE_SETTINGS)

    async def scenario() -> None:
        assert SPEC.inbound is not None
        side = SPEC.inbound(settings, RecordingInboundContext(config_dir=tmp_path))
        with pytest.raises(NotImplementedError) as raised:
            await side.start()
        await side.stop()
        assert str(raised.value).startswith(f"{SPEC.name} inbound: implement start()")

    asyncio.run(scenario())'''

TEST_OUTBOUND = TEST_SIDE + '''\
def test_outbound_send_is_not_implemented_yet(tmp_path: Path) -> None:
    settings = ${Name}OutboundSettings(**EXAMPLE_SETTINGS)

    async def scenario() -> None:
        assert SPEC.outbound is not None
        async with http_client() as client:
            side = SPEC.outbound(settings, outbound_context(client, tmp_path))
            await side.start()
            try:
                with pytest.raises(NotImplementedError) as raised:
                    await side.send(Envelope(source="test", type="kit.sample", data={"n": 1}))
            finally:
                await side.stop()
        assert str(raised.value).startswith(f"{SPEC.name} outbound: implement send()")

    asyncio.run(scenario())'''

CONFTEST = '''\
"""pytest settings of esb-adapter-$name's tests.

``collect_ignore`` keeps the kit's conformance suites out of the run until the adapter works:
pytest does not collect the file at all, so nothing is reported as skipped. Delete the entry
once its peer hooks are written (see README.md, Tests).
"""

collect_ignore = ["test_${name}_conformance.py"]
'''

CONFORMANCE_HEAD = '''\
"""The test kit's contract suites for the $name adapter.

Off until turned on: tests/conftest.py lists this file in ``collect_ignore``. Write the peer
hooks named in each class's docstring (the suites in esb.adapters.testing document them; so
does "Prove it with the test kit" in esb's docs/adapters.md), then delete that line. A side that
speaks HTTP may subclass HttpOutboundContract / HttpInboundContract instead: they bring ready
HTTP peers.
"""

from __future__ import annotations

from esb.adapters.testing import SUITES

from $module.spec import SPEC'''

CONFORMANCE_INBOUND = '''\

class Test${Name}InboundConformance(InboundContract):
    """Write ``offer()`` (the peer hands the running side one input), ``acknowledged()``
    (does the peer consider it taken?) and ``retry()`` when the peer does more than offer
    again once told to retry."""

    spec = SPEC
    settings = {"address": "legacy-host:1414"}
    #: The envelope type this side gives the input that ``offer()`` hands over.
    expected_type = "$name.received"'''

CONFORMANCE_OUTBOUND = '''\

class Test${Name}OutboundConformance(OutboundContract):
    """Write ``accepting_peer()`` and ``failing_peer(kind)``: async context managers that run
    a test instance of the outside system and yield an ``OutboundPeer`` pointing at it."""

    spec = SPEC
    settings = {"address": "legacy-host:1414"}'''
