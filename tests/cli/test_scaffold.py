"""`esb adapters new`: the scaffolded package installs, registers its entry point, its stubs say
what to write, its test passes out of the box and its conformance suites run once turned on; bad
names and options are refused with clear errors."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from esbtest.venv import Overlay, overlay

from esb.bus.cli.scaffold import register


@pytest.fixture
def cli() -> click.Group:
    @click.group()
    def adapters() -> None:
        """The `esb adapters` group, as main.py builds it."""

    register(adapters)
    return adapters




def test_a_scaffolded_package_installs_and_its_test_passes(cli: click.Group,
                                                           tmp_path: Path) -> None:
    name = f"scaffold{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(cli, ["new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / f"esb-adapter-{name}"
    assert f"created {root}" in result.output
    src = root / "src" / f"esb_adapter_{name}"
    assert {p.name for p in src.iterdir()} >= {"__init__.py", "settings.py", "inbound.py",
                                               "outbound.py", "spec.py"}
    assert {p.name for p in (root / "tests").iterdir()} >= {
        f"test_{name}.py", f"test_{name}_conformance.py", "conftest.py"}
    assert (root / "README.md").exists()
    pyproject = (root / "pyproject.toml").read_text()
    assert f'{name} = "esb_adapter_{name}.spec:SPEC"' in pyproject
    assert 'dependencies = ["esb"]' in pyproject
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
    dist = f"esb-adapter-{name}"
    env = overlay(tmp_path / "venv")  # never installed into the suite's own environment
    env.install(root)
    listed = env.run("-m", "esb.bus.cli.main", "adapters", "list", "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows[name]["package"] == dist
    assert rows[name]["directions"] == "inbound,outbound"
    # -v lists every test run (with its outcome): what was collected, in the same run.
    run = env.pytest(root, "-v", "-rfEs", timeout=180)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "failed" not in run.stdout and "error" not in run.stdout.lower()
    assert "skipped" not in run.stdout and "deselected" not in run.stdout
    ran = run.stdout
    assert f"test_{name}.py::test_outbound_send_is_not_implemented_yet PASSED" in ran
    assert f"test_{name}.py::test_inbound_start_is_not_implemented_yet PASSED" in ran
    assert f"test_{name}.py::Test{name.capitalize()}OutboundSpec" in ran
    assert "conformance" not in ran  # off until the author turns it on
    assert_conformance_runs_once_turned_on(root, name, env)


def assert_conformance_runs_once_turned_on(root: Path, name: str, env: Overlay) -> None:
    """Do what the README says (delete the ``collect_ignore`` line): the kit's suites are then
    collected and fail on the unwritten stubs and hooks, with messages saying what to write."""
    conftest = root / "tests" / "conftest.py"
    lines = conftest.read_text().splitlines(keepends=True)
    assert sum(line.startswith("collect_ignore") for line in lines) == 1
    conftest.write_text("".join(line for line in lines if not line.startswith("collect_ignore")))
    run = env.pytest(root, "-q", "-rfEs", timeout=180)
    assert run.returncode == 1, run.stdout[-4000:]
    assert f"test_{name}_conformance.py::Test{name.capitalize()}OutboundConformance" in run.stdout
    assert f"test_{name}_conformance.py::Test{name.capitalize()}InboundConformance" in run.stdout
    assert "accepting_peer(): start a peer that accepts everything" in run.stdout
    assert f"{name} inbound: implement start()" in run.stdout
    summary = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ failed, \d+ passed in .*", summary), summary  # none skipped


def test_one_direction_scaffolds_one_side(cli: click.Group, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new", "legacy_out", "--dir", str(tmp_path),
                                      "--directions", "outbound"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "esb-adapter-legacy-out"
    src = root / "src" / "esb_adapter_legacy_out"
    assert (src / "outbound.py").exists() and not (src / "inbound.py").exists()
    assert "inbound" not in (src / "spec.py").read_text()
    test = (root / "tests" / "test_legacy_out.py").read_text()
    assert "test_outbound_send_is_not_implemented_yet" in test and "Inbound" not in test
    conformance = (root / "tests" / "test_legacy_out_conformance.py").read_text()
    assert "(OutboundContract):" in conformance and "(InboundContract):" not in conformance
    assert "inbound.py" not in (root / "README.md").read_text()


def test_the_stubs_say_what_to_write_and_where_the_guide_is(
        cli: click.Group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"stubs{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(cli, ["new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    monkeypatch.syspath_prepend(str(tmp_path / f"esb-adapter-{name}" / "src"))
    spec = importlib.import_module(f"esb_adapter_{name}.spec").SPEC
    assert spec.name == name and spec.directions == ("inbound", "outbound")
    assert list(spec.outbound_settings.model_fields) == ["address"]
    assert list(spec.inbound_settings.model_fields) == ["address"]
    settings = spec.outbound_settings(address="host:1")
    outbound = spec.outbound(settings, None)
    with pytest.raises(NotImplementedError) as raised:
        asyncio.run(outbound.send(None))
    assert str(raised.value) == (f"{name} outbound: implement send() in esb_adapter_{name}/"
                                 "outbound.py — see 'Writing an adapter' in esb's "
                                 "docs/adapters.md")
    inbound = spec.inbound(spec.inbound_settings(address="host:1"), None)
    assert inbound.routes == []
    with pytest.raises(NotImplementedError) as raised:
        asyncio.run(inbound.start())
    assert str(raised.value) == (f"{name} inbound: implement start() (or serve HttpRoutes "
                                 f"from `routes`) in esb_adapter_{name}/inbound.py — see "
                                 "'Writing an adapter' in esb's docs/adapters.md")


def test_the_longest_name_still_scaffolds_lint_clean_code(cli: click.Group,
                                                         tmp_path: Path) -> None:
    name = "a" * 20 + "_" + "b" * 19  # 40 characters, the most check_name allows
    result = CliRunner().invoke(cli, ["new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "."],
                          cwd=tmp_path / f"esb-adapter-{name.replace('_', '-')}",
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["new", "Bad-Name"], "'Bad-Name' is not a valid adapter name: use lowercase letters"),
    (["new", "9lives"], "'9lives' is not a valid adapter name"),
    (["new", "class"], "'class' is a Python keyword"),
    (["new", "rest"], "an adapter named 'rest' is already installed"),
    (["new", "ok_name", "--directions", "sideways"],
     "'sideways': a comma-separated list of inbound, outbound"),
    (["new", "ok_name", "--directions", ""], "a comma-separated list of inbound, outbound"),
])
def test_bad_names_and_options_are_refused_clearly(cli: click.Group, tmp_path: Path,
                                                   args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, [*args, "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_not_overwritten(cli: click.Group, tmp_path: Path) -> None:
    (tmp_path / "esb-adapter-mine").mkdir()
    result = CliRunner().invoke(cli, ["new", "mine", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists; choose another --dir or remove it" in result.output
