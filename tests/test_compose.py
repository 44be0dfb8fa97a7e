"""docker-compose.yml and the image: RabbitMQ with its management UI and the daemon on it,
reachable from this host only, with no default password, not running as root, restarted when
they die, with the daemon's state folder (the sample outbox) on the host, and an image built
without the repository's history or local secrets. (No Docker engine is needed: the files are
read as documents.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose) <= {"services", "volumes", "networks", "configs", "secrets", "name"}
    return compose["services"]


def variables(text: str) -> dict[str, str]:
    """``${NAME<op>rest}`` references in ``text``: name → operator (``:-``, ``:?``, ``""``)."""
    return {m["name"]: m["op"] or "" for m in
            re.finditer(r"\$\{(?P<name>\w+)(?P<op>:?[-?])?[^}]*\}", text)}


def test_rabbitmq_with_management_and_the_daemon_on_it(services: dict[str, Any]) -> None:
    rabbit, esb = services["rabbitmq"], services["esb"]
    assert "management" in rabbit["image"]
    assert "healthcheck" in rabbit and "healthcheck" in esb
    assert esb["build"] == "."
    assert esb["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    url = esb["environment"]["ESB_BUS_URL"]
    assert url.startswith("amqp://esb:") and url.endswith("@rabbitmq:5672/")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and 'CMD ["esb", "run"' in dockerfile
    for folder in ("bus", "adapters", "transformers", "config", "routes"):
        assert f"COPY {folder} {folder}" in dockerfile


def test_ports_are_published_on_this_host_only(services: dict[str, Any]) -> None:
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published
    for port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), port


def test_no_default_password_or_token(services: dict[str, Any]) -> None:
    rabbit, esb = services["rabbitmq"]["environment"], services["esb"]["environment"]
    assert rabbit["RABBITMQ_DEFAULT_USER"] == "esb"
    for value in (rabbit["RABBITMQ_DEFAULT_PASS"], esb["ESB_BUS_URL"], esb["ESB_ADMIN_TOKEN"]):
        refs = variables(value)
        assert refs and all(op == ":?" for op in refs.values()), value  # required, no default
    assert variables(esb["ESB_BUS_URL"]) == {"RABBITMQ_PASSWORD": ":?"}


def test_the_daemon_does_not_run_as_root(services: dict[str, Any]) -> None:
    user = services["esb"]["user"]
    assert all(op == ":-" for op in variables(user).values()), user
    uid = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", user).split(":")[0]  # with the defaults
    assert uid.isdigit() and int(uid) != 0, user
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")  # the image alone is not root either


def test_every_service_is_restarted(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name


def test_the_state_folder_is_on_the_host(services: dict[str, Any]) -> None:
    """The README's `cat .esb/outbox/...` works on the host: the daemon's working folder is
    /app (the Dockerfile's WORKDIR) and ./.esb is mounted as its .esb."""
    workdir = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
               if line.startswith("WORKDIR ")][-1]
    assert f"./.esb:{workdir}/.esb" in services["esb"]["volumes"]
    config = yaml.safe_load((ROOT / "config" / "esb.yaml").read_text())
    for destination in config["destinations"].values():
        if destination["adapter"] == "file":
            assert destination["directory"].startswith(".esb/")


def test_the_image_gets_no_history_state_or_virtualenv() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".esb", ".venv"} <= ignored


def test_the_readme_says_how_to_reach_the_outbox_and_status() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("docker compose up", 1)[1][:1500]
    for needed in ("RABBITMQ_PASSWORD", "ESB_ADMIN_TOKEN", "127.0.0.1", ".esb/outbox",
                   "esb status", "ESB_UID"):
        assert needed in section, needed
