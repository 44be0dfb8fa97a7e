"""``esb routes test`` shows what a split makes: every part, its place, and each destination's
copy of it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from esb.bus.cli.main import cli


def project(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "routes").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text(yaml.safe_dump({
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"erp": {"adapter": "rest", "url": "http://127.0.0.1:9/erp"}}}))
    (tmp_path / "routes" / "split.yaml").write_text(yaml.safe_dump({"routes": [{
        "name": "orders", "from": ["shop"], "split": {"jmespath": "orders", "max_parts": 3},
        "to": ["erp"]}]}))
    return tmp_path


def routes_test(root: Path, message: dict[str, object], *extra: str) -> tuple[int, str]:
    (root / "m.json").write_text(json.dumps(message))
    result = CliRunner().invoke(cli, ["routes", "test", str(root / "routes"), "--message",
                                      str(root / "m.json"), "--source", "shop", "--config",
                                      str(root / "config" / "esb.yaml"), *extra])
    return result.exit_code, result.output


def test_a_split_shows_every_part(tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out = routes_test(root, {"orders": [{"n": 1}, {"n": 2}]})
    assert code == 0, out
    assert "split    2 part(s)" in out
    assert "→ erp  route orders  part 1/2  application/json" in out
    assert "→ erp  route orders  part 2/2" in out
    code, out = routes_test(root, {"orders": [{"n": 1}, {"n": 2}]}, "--json")
    plan = json.loads(out)
    assert plan["parts"] == 2
    assert [d["part"] for d in plan["deliveries"]] == ["1/2", "2/2"]
    assert [d["data"] for d in plan["deliveries"]] == [{"n": 1}, {"n": 2}]


def test_a_split_over_the_limit_is_a_dead_letter(tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out = routes_test(root, {"orders": [1, 2, 3, 4]})
    assert code == 1
    assert "would be dead-lettered" in out and "more than max_parts (3)" in out
