"""`esb adapters new`: the scaffolded package installs, registers its entry point and its test
passes out of the box; bad names and options are refused with clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

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
    assert (root / "tests" / f"test_{name}.py").exists() and (root / "README.md").exists()
    pyproject = (root / "pyproject.toml").read_text()
    assert f'{name} = "esb_adapter_{name}.spec:SPEC"' in pyproject
    assert 'dependencies = ["esb"]' in pyproject
    dist = f"esb-adapter-{name}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-e", str(root), "--no-deps", "-q"],
                   check=True, timeout=300, capture_output=True)
    try:
        listed = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "adapters", "list",
                                 "--json"], capture_output=True, text=True, timeout=60,
                                check=True)
        rows = {r["name"]: r for r in json.loads(listed.stdout)}
        assert rows[name]["package"] == dist
        assert rows[name]["directions"] == "inbound,outbound"
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "-rs"], cwd=root, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "failed" not in run.stdout and "error" not in run.stdout.lower()
        assert "skipped" not in run.stdout  # installed: the entry point check runs too
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", dist],
                       timeout=120, capture_output=True)


def test_one_direction_scaffolds_one_side(cli: click.Group, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new", "legacy_out", "--dir", str(tmp_path),
                                      "--directions", "outbound"])
    assert result.exit_code == 0, result.output
    src = tmp_path / "esb-adapter-legacy-out" / "src" / "esb_adapter_legacy_out"
    assert (src / "outbound.py").exists() and not (src / "inbound.py").exists()
    assert "inbound" not in (src / "spec.py").read_text()
    test = (tmp_path / "esb-adapter-legacy-out" / "tests" / "test_legacy_out.py").read_text()
    assert "HttpOutboundContract" in test and "HttpInboundContract" not in test


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
