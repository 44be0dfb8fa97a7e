"""The layout of PRODUCT.md §2 stays true: packages, entry points, compose file."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import yaml

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
    adapters = {ep.name: ep for ep in entry_points(group="esb.adapters")}
    assert {"rest", "soap", "graphql", "webhook", "file"} <= set(adapters)
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


def test_compose_runs_rabbitmq_with_management_and_the_daemon_on_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    rabbit, esb = services["rabbitmq"], services["esb"]
    assert "management" in rabbit["image"]
    assert "healthcheck" in rabbit and "healthcheck" in esb
    assert esb["build"] == "."
    assert esb["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert esb["environment"]["ESB_BUS_URL"].startswith("amqp://")
    assert "@rabbitmq:5672" in esb["environment"]["ESB_BUS_URL"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and 'CMD ["esb", "run"' in dockerfile
    for folder in ("bus", "adapters", "transformers", "config", "routes"):
        assert f"COPY {folder} {folder}" in dockerfile


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block == ["python -m pip install -e . && esb run",
                     "python -m pip install -e '.[test]' && python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci and "pip install -q -e '.[test]'" in ci
