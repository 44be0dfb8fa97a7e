"""run_transform: what ``esb transform NAME|CHAIN FILE`` calls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from esb.bus.cli.main import cli
from esb.bus.errors import ConfigError
from esb.transformers.cli_support import run_transform

DATA = Path(__file__).parent / "data"


def test_entry_point_name() -> None:
    out = run_transform("xml-to-json", DATA / "soap_order.xml", base_dir=DATA)
    assert out.datacontenttype == "application/json"
    assert "soap:Envelope" in out.data
    assert (out.source, out.type, out.subject) == ("cli", "sample", "soap_order.xml")


def test_stylesheet_path(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"canonicalOrder": {"orderId": "PO-9"}}')
    chain = tmp_path / "c.yaml"
    shutil.copytree(DATA / "xslt", tmp_path / "xslt")
    chain.write_text(yaml.safe_dump(["json-to-xml", {"xslt": "xslt/canonical-to-partner.xsl"}]))
    out = run_transform(str(chain), tmp_path / "in.json", base_dir=tmp_path, type="order")
    assert 'number="PO-9"' in out.data and out.type == "order"
    xml = tmp_path / "in.xml"
    xml.write_text("<canonicalOrder><orderId>PO-8</orderId></canonicalOrder>")
    out = run_transform("xslt/canonical-to-partner.xsl", xml, base_dir=DATA)
    assert 'number="PO-8"' in out.data


def test_content_type_override(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text('{"a": {"b": 2}}')
    out = run_transform("json-to-xml", tmp_path / "data.txt", base_dir=tmp_path,
                        content_type="application/json")
    assert out.data.endswith("<a><b>2</b></a>")


def test_bad_specs(tmp_path: Path) -> None:
    (tmp_path / "in.xml").write_text("<a/>")
    with pytest.raises(ConfigError, match="Did you mean 'xml-to-json'"):
        run_transform("xml-to-jsn", tmp_path / "in.xml", base_dir=tmp_path)
    (tmp_path / "c.yaml").write_text("xslt: a.xsl\n")
    with pytest.raises(ConfigError, match="a chain file holds a YAML list"):
        run_transform("c.yaml", tmp_path / "in.xml", base_dir=tmp_path)


# -- named definitions (the configuration's ``transformers:``) -------------------------------

NAMED = {"order-json": ["xml-to-json", {"jmespath": "order"}], "just-id": {"jmespath": "id"}}

UDFS = '''
from esb.bus.errors import PermanentError, TransientError

def refuse(env):
    raise PermanentError("customer unknown")

def later(env):
    raise TransientError("lookup service down")
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the cwd) with ``config/esb.yaml`` defining transformers, an order
    file, and an importable module of failing python steps."""
    (tmp_path / "config").mkdir()
    named = {**NAMED, "refuse": [{"python": "esb_cli_udfs:refuse"}],
             "later": {"python": "esb_cli_udfs:later"}}
    (tmp_path / "config/esb.yaml").write_text(yaml.safe_dump({"transformers": named}))
    (tmp_path / "order.xml").write_text("<order><id>7</id><note>hi</note></order>")
    (tmp_path / "esb_cli_udfs.py").write_text(UDFS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ESB_CONFIG", raising=False)
    return tmp_path


def esb(*args: str) -> Result:
    return CliRunner().invoke(cli, ["transform", *args])


def test_named_definition_and_a_chain_file_naming_one(tmp_path: Path) -> None:
    (tmp_path / "order.xml").write_text("<order><id>7</id></order>")
    out = run_transform("order-json", tmp_path / "order.xml", base_dir=tmp_path, named=NAMED)
    assert out.data == {"id": "7"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(["order-json", "just-id"]))
    out = run_transform("c.yaml", tmp_path / "order.xml", base_dir=tmp_path, named=NAMED)
    assert out.data == "7"


def test_cli_uses_the_default_configuration(project: Path) -> None:
    result = esb("order-json", "order.xml")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": "7", "note": "hi"}


def test_cli_config_option(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other") / "esb.yaml"
    other.write_text(yaml.safe_dump(
        {"transformers": {"order-json": ["xml-to-json", {"jmespath": "order.id"}]}}))
    result = esb("--config", str(other), "order-json", "order.xml")
    assert result.exit_code == 0, result.output
    assert result.stdout == "7\n"  # a string result is printed as is
    missing = esb("--config", "nowhere.yaml", "order-json", "order.xml")
    assert missing.exit_code == 2 and "nowhere.yaml: cannot read" in missing.stderr


def test_cli_without_a_configuration_knows_no_definitions(project: Path) -> None:
    (project / "config/esb.yaml").unlink()
    result = esb("order-json", "order.xml")
    assert result.exit_code == 2
    assert "unknown transformer 'order-json'" in result.stderr
    assert esb("xml-to-json", "order.xml").exit_code == 0  # built-ins need no configuration


@pytest.mark.parametrize(("spec", "message"), [
    ("refuse", "transformer 'refuse/python': PermanentError: customer unknown"),
    ("later", "transformer 'later': lookup service down"),
])
def test_cli_prints_the_error_with_the_step(project: Path, spec: str, message: str) -> None:
    result = esb(spec, "order.xml")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"esb: {message}"


def test_every_option_has_help() -> None:
    command = cli.commands["transform"]
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    assert {p.name for p in options} >= {"config_path", "etype", "source", "content_type"}
    assert all(p.help for p in options), [p.name for p in options if not p.help]
