"""The ``esb transform`` commands docs/transformers.md shows run as written, on the sample
files that ship with esb; inline steps and ``--step`` chains."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from esbtest import cli

ROOT = Path(__file__).resolve().parents[2]


def esb(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``esb ARGS`` in ``cwd``, in this process (:mod:`esbtest.cli`): an interpreter per
    command spent half a second of CPU importing esb again each time.
    :func:`test_the_installed_command_prints_what_main_does` keeps the real command honest."""
    return cli.run(*args, cwd=cwd)


def test_the_installed_command_prints_what_main_does() -> None:
    """One documented command as a shell runs it: the same output and exit status."""
    args = ["transform", "--step", "json-to-xml: {root: order}", "samples/order.json"]
    real = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    here = esb(*args)
    assert (real.returncode, real.stdout, real.stderr) == (0, here.stdout, here.stderr)


def documented_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "transformers.md").read_text()
    return [shlex.split(line.split("  #")[0]) for line in text.splitlines()
            if line.startswith("esb transform ")]


def test_every_documented_transform_command_runs_on_the_shipped_samples() -> None:
    commands = documented_commands()
    assert len(commands) >= 6
    for command in commands:
        for arg in command[2:]:
            if re.match(r"^(samples|config)/", arg):
                assert (ROOT / arg).exists(), f"docs name {arg}, which does not ship"
        r = esb(*command[1:])
        assert r.returncode == 0, (command, r.stderr)
        assert r.stdout.strip(), command


def test_inline_steps_and_step_chains(tmp_path: Path) -> None:
    r = esb("transform", "json-to-xml: {root: order}", "samples/order.json")
    assert r.returncode == 0, r.stderr
    assert "<order><customer>ACME GmbH</customer>" in r.stdout
    r = esb("transform", "--step", "json-to-xml: {root: order}", "--step",
            "{xslt: config/xslt/canonical-to-erp.xsl}", "--step", "xml-to-json",
            "samples/order.json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["SalesOrder"]["Customer"] == "ACME GmbH"
    # from another folder, the configuration's paths still resolve against its folder
    r = esb("transform", "--config", str(ROOT / "config" / "esb.yaml"), "order-to-erp",
            str(ROOT / "samples" / "order.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "<SalesOrder" in r.stdout


def test_bad_inline_steps_are_clear() -> None:
    r = esb("transform", "json-to-xml: {root: [order", "samples/order.json")
    assert r.returncode == 2 and "not a valid inline step" in r.stderr
    r = esb("transform", "json-to-xml: {rooot: order}", "samples/order.json")
    assert r.returncode == 2 and "rooot" in r.stderr
    r = esb("transform", "--step", "xml-to-json", "a", "b")
    assert r.returncode == 2 and "give SPEC and FILE, or --step ... and FILE" in r.stderr
