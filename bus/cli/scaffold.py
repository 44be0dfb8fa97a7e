"""``esb adapters new NAME``: scaffold an installable adapter package with a passing test.

The package registers itself under the ``esb.adapters`` entry point and ships a small working
example (an HTTP endpoint in, an HTTP POST out) whose test reuses the kit's contract suites, so
``pip install -e esb-adapter-NAME && pytest`` passes before the first line of the real protocol
is written. The places to change are marked ``TODO(esb adapters new)``.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

import click

DIRECTIONS = ("inbound", "outbound")
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
              "module": f"esb_adapter_{name}", "Name": _camel(name)}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/esb_adapter_{name}/__init__.py": INIT,
        f"src/esb_adapter_{name}/settings.py": _settings(directions),
        f"src/esb_adapter_{name}/spec.py": _spec(directions),
        f"tests/test_{name}.py": _test(directions),
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
        """Scaffold an installable adapter package NAME with a passing contract test."""
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


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _settings(directions: tuple[str, ...]) -> str:
    parts = [SETTINGS_HEAD]
    if "inbound" in directions:
        parts.append(SETTINGS_INBOUND)
    if "outbound" in directions:
        parts.append(SETTINGS_OUTBOUND)
    return "\n\n\n".join(parts) + "\n"


def _spec(directions: tuple[str, ...]) -> str:
    imports, args = [], []
    models = ", ".join(f"${{Name}}{d.capitalize()}Settings" for d in directions)
    for d in directions:
        imports.append(f"from $module.{d} import ${{Name}}{d.capitalize()}")
        args.append(f"    {d}_settings=${{Name}}{d.capitalize()}Settings,\n"
                    f"    {d}=lambda settings, ctx: ${{Name}}{d.capitalize()}(settings, ctx),")
    return SPEC_TEMPLATE.format(imports="\n".join(imports), models=models,
                                args="\n".join(args))


def _test(directions: tuple[str, ...]) -> str:
    kinds = " and ".join(f"Http{d.capitalize()}Contract" for d in directions)
    parts = [TEST_HEAD.format(kinds=kinds.replace(" and ", ", "))]
    if "outbound" in directions:
        parts.append(TEST_OUTBOUND)
    if "inbound" in directions:
        parts.append(TEST_INBOUND)
    return "\n\n\n".join(parts) + "\n"


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

README = """\
# $dist

An esb adapter, scaffolded by `esb adapters new $name`.

    python -m pip install -e .   # registers `adapter: $name` (entry point group esb.adapters)
    python -m pytest             # the kit's contract suites, against the example behaviour

It starts as a working example — inbound: an HTTP endpoint (`path`) whose JSON requests become
envelopes; outbound: each envelope POSTed as JSON to `url` — so the contract tests pass from the
start. Replace the example with your protocol where the code says `TODO(esb adapters new)`:

1. `settings.py` — what `esb.yaml` may say about an endpoint (unknown keys stay errors).
2. `outbound.py` — `send(envelope)` returns once the peer accepted it; translate every driver
   error into `TransientError` (retry) or `PermanentError` (dead-letter), `from` the original.
3. `inbound.py` — hand each input to `ctx.accept(envelope)` and acknowledge your peer only after
   it returned; on `BusError` tell the peer to retry and keep the input.
4. `tests/test_$name.py` — once the protocol is not HTTP, subclass `OutboundContract` /
   `InboundContract` and write the peer hooks (`accepting_peer`, `failing_peer`, `offer`,
   `acknowledged`, `retry`).

The authoring guide is docs/adapters.md ("Writing an adapter") in the esb repository.
"""

INIT = '''\
"""esb adapter ``$name`` (entry point ``esb.adapters: $name``)."""
'''

SETTINGS_HEAD = '''\
"""Settings of the $name adapter: what esb.yaml may say about one endpoint.

Subclass ``AdapterSettings`` so unknown keys are errors (listed with their file and line).
Give each field a ``Field(description=...)``: the reference docs are generated from it.
"""

from __future__ import annotations

from esb.adapters.spec import AdapterSettings
from pydantic import Field'''

SETTINGS_INBOUND = '''\
class ${Name}InboundSettings(AdapterSettings):
    # TODO(esb adapters new): the settings your inbound side needs.
    path: str = Field(pattern=r"^/", description="URL path served on the daemon's HTTP server")
    type: str = Field("$name.received", min_length=1, description="envelope type")'''

SETTINGS_OUTBOUND = '''\
class ${Name}OutboundSettings(AdapterSettings):
    # TODO(esb adapters new): the settings your outbound side needs.
    url: str = Field(pattern=r"^https?://", description="where each envelope is POSTed")'''

INBOUND = '''\
"""$name inbound: outside input → envelopes handed to ``ctx.accept``.

Example behaviour (TODO(esb adapters new): replace with your protocol): JSON POSTed to
``path`` becomes one envelope; the answer is 202 once the bus confirmed it, 503 when it could
not (the caller retries), 400 for a body that is not JSON.
"""

from __future__ import annotations

import json

from esb.adapters.spec import HttpRoute, InboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import BusError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from $module.settings import ${Name}InboundSettings


class ${Name}Inbound:
    def __init__(self, settings: ${Name}InboundSettings, ctx: InboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        # HTTP routes are served by the daemon; a polling side leaves this empty and runs its
        # loop as a task from start() (cancel and await it in stop()).
        self.routes = [HttpRoute(settings.path, ("POST",), self.handle)]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def handle(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        envelope = Envelope(source=self.ctx.name, type=self.settings.type, data=data,
                            datacontenttype="application/json",
                            idempotencykey=request.headers.get("idempotency-key"))
        try:
            accepted = await self.ctx.accept(envelope)
        except BusError:  # nothing was taken: tell the peer to retry, never acknowledge
            return JSONResponse({"error": "retry later"}, status_code=503,
                                headers={"Retry-After": "1"})
        return JSONResponse({"id": accepted.id}, status_code=202)
'''

OUTBOUND = '''\
"""$name outbound: an envelope → one call to the outside system.

Example behaviour (TODO(esb adapters new): replace with your protocol): POST the envelope's
data as JSON to ``url``. Error translation is the part that matters: 2xx is accepted; 408,
429 and 5xx, timeouts and connection failures are transient; any other status is permanent.
No driver exception may leave ``send``.
"""

from __future__ import annotations

import httpx
from esb.adapters.spec import OutboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import PermanentError, TransientError

from $module.settings import ${Name}OutboundSettings


class ${Name}Outbound:
    def __init__(self, settings: ${Name}OutboundSettings, ctx: OutboundContext) -> None:
        self.settings = settings
        self.ctx = ctx  # resources are opened in start(), not here

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None  # the shared HTTP client belongs to the daemon: never close it

    async def send(self, envelope: Envelope) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": envelope.key}
        try:
            response = await self.ctx.http().post(self.settings.url, headers=headers,
                                                  content=envelope.data_bytes())
        except httpx.HTTPError as exc:
            raise TransientError(f"POST {self.settings.url}: {type(exc).__name__}") from exc
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise TransientError(f"POST {self.settings.url}: HTTP {status}", status=status)
        if status >= 300:
            raise PermanentError(f"POST {self.settings.url}: HTTP {status}", status=status)
'''

SPEC_TEMPLATE = '''\
"""The $name adapter's spec: what its ``esb.adapters`` entry point names."""

from __future__ import annotations

from esb.adapters.spec import AdapterSpec

{imports}
from $module.settings import {models}

SPEC = AdapterSpec(
    name="$name",
    # TODO(esb adapters new): one line for `esb adapters list`.
    summary="$name (scaffolded example: HTTP JSON in, HTTP POST out)",
{args}
)
'''

TEST_HEAD = '''\
"""$name honours esb's adapter contract: the kit's suites, reused.

The Http*Contract suites bring an HTTP peer that fits the scaffolded example. When your side
speaks another protocol, subclass OutboundContract / InboundContract instead and write the peer
hooks (see their docstrings and docs/adapters.md).
"""

from __future__ import annotations

from esb.adapters.testing import {kinds}

from $module.spec import SPEC'''

TEST_OUTBOUND = '''\
class Test${Name}Outbound(HttpOutboundContract):
    spec = SPEC
    settings = {"url": "http://127.0.0.1:9/unused"}  # the peer hook points it at a test peer'''

TEST_INBOUND = '''\
class Test${Name}Inbound(HttpInboundContract):
    spec = SPEC
    settings = {"path": "/in/$name"}
    expected_type = "$name.received"
    http_path = "/in/$name"'''
