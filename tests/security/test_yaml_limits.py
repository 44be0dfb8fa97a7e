"""Route files: anchors/aliases, node count, nesting and size are bounded for `esb routes
validate` and deploys alike; Python (and any non-core) YAML tags are refused with file:line,
never a 500."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from esbtest.daemon import DaemonProcess
from esbtest.hostile import ROUTES, MiB, rss

from esb.bus.config.yamlsource import YamlLimits, parse_yaml
from esb.bus.errors import ConfigError
from esb.bus.routing.routeset import parse_route_files


def laughs(levels: int = 9) -> str:
    """Nested anchors: 10**levels scalars once every alias is expanded."""
    lines = ["routes: []", "x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*x{i - 1}"] * 10)
        lines.append(f"x{i}: &x{i} [{refs}]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "aliases": (laughs(), "aliases"),
    "python tag": ("routes:\n  - !!python/object/apply:os.system [true]\n", "!!python"),
    "python mapping tag": ("routes: !!python/object:os.Thing {a: 1}\n", "!!python"),
    "local tag": ("routes:\n  - !include other.yaml\n", "!include"),
    "deep flow": ("routes: " + "[" * 5000 + "]" * 5000 + "\n", "deeper"),
    "deep blocks": ("".join(" " * i + "a:\n" for i in range(100)) + " " * 100 + "a: 1\n",
                    "deeper"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_parse_refuses_with_a_line(name: str) -> None:
    text, words = HOSTILE[name]
    rs = parse_route_files({"r.yaml": text})
    assert rs.problems and words in rs.problems[0], rs.problems
    assert rs.problems[0].startswith("r.yaml")


def test_node_count_counts_aliases_each_time() -> None:
    text = "x: &x [a, b, c, d, e, f, g, h]\n" + "".join(f"y{i}: *x\n" for i in range(50))
    with pytest.raises(ConfigError, match="300 YAML nodes"):
        parse_yaml(text, Path("r.yaml"), limits=YamlLimits(max_nodes=300))
    assert len(parse_yaml(text, Path("r.yaml")).value) == 51


def test_size_is_bounded() -> None:
    rs = parse_route_files({"r.yaml": "routes: []\n" + "#" * 5000 + "\n"},
                           limits=YamlLimits(max_bytes=4096))
    assert "4096 bytes" in rs.problems[0]


def test_validate_refuses_quickly(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "bomb.yaml").write_text(laughs())
    (tmp_path / "esb.yaml").write_text("sources: {}\n")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", "routes", "validate",
                          "routes", "--config", "esb.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "bomb.yaml:" in run.stderr + run.stdout and "aliases" in run.stderr + run.stdout
    assert time.monotonic() - started < 30


@pytest.fixture(scope="module")
def daemon(module_daemons: Callable[..., DaemonProcess], module_sink: Any) -> DaemonProcess:
    return module_daemons({"sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
                           "destinations": {"out": {"adapter": "rest",
                                                    "url": module_sink.url + "/in"}}},
                          ROUTES).start()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_deploy_refuses_whole_and_keeps_the_running_set(daemon: DaemonProcess,
                                                        name: str) -> None:
    before = rss(daemon)
    text, words = HOSTILE[name]
    r = daemon.admin("POST", "/admin/routes/deploy", json={"files": {"r.yaml": text}})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert any(words in e for e in r.json()["errors"]), r.json()
    assert rss(daemon) - before < 50 * MiB
    assert daemon.admin("GET", "/admin/routes/versions").status_code == 200


def test_an_oversize_deploy_is_413(daemon: DaemonProcess) -> None:
    r = daemon.admin("POST", "/admin/routes/deploy", content=b"x" * (33 * MiB),
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 413
