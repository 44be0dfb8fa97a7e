"""The layout of PRODUCT.md §2 stays true: packages, entry points, the README's commands
(the compose file: tests/test_compose.py)."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found = set()
    for package, folder in mapping.items():
        if package == "esb.examples":  # the examples ship as data; their own packages are theirs
            found.add(package)
            continue
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed


def test_builtins_are_found_through_entry_points() -> None:
    # esb's own entry points only: whatever plugins the environment also has are theirs
    adapters = {ep.name: ep for ep in entry_points(group="esb.adapters")
                if ep.dist is not None and ep.dist.name == "esb"}
    assert {"rest", "soap", "graphql", "webhook", "file", "amqp"} <= set(adapters)
    for ep in adapters.values():
        spec = ep.load()
        assert spec.name == ep.name
        assert spec.directions
    transformers = {ep.name for ep in entry_points(group="esb.transformers")}
    assert {"xslt", "python", "xml-to-json", "json-to-xml", "jmespath", "xsd",
            "json-schema"} <= transformers


def test_design_card_dependencies_are_declared() -> None:
    deps = " ".join(PYPROJECT["project"]["dependencies"])
    for name in ("kombu", "pika", "lxml", "zeep", "httpx", "pydantic", "structlog", "click"):
        assert name in deps


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block == ["python -m pip install -e . && esb run",
                     "python -m pip install -e '.[test]' && python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"  {block[1]}" in ci  # CI runs exactly the README's test command
