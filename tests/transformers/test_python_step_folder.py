"""A ``python`` step's module may sit in the configuration folder: no install, no
PYTHONPATH; ``esb routes validate`` says where it looked when it is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ENRICH = '''
from enrichers.regions import REGIONS   # the package's own imports work too

def add_region(env):
    return {**env.data, "region": REGIONS.get(env.data.get("country"), "other")}
'''


def _project(root: Path, step: str) -> Path:
    (root / "config").mkdir(parents=True)
    (root / "routes").mkdir()
    (root / "enrichers").mkdir()
    (root / "enrichers" / "__init__.py").write_text("")
    (root / "enrichers" / "shop.py").write_text(ENRICH)
    (root / "enrichers" / "regions.py").write_text('REGIONS = {"DE": "emea"}\n')
    (root / "config" / "esb.yaml").write_text(yaml.safe_dump({
        "sources": {"shop": {"adapter": "rest", "path": "/in/shop"}},
        "destinations": {"erp": {"adapter": "file", "directory": "out"}}}))
    (root / "routes" / "r.yaml").write_text(yaml.safe_dump({
        "routes": [{"name": "orders", "transform": [step], "to": ["erp"]}],
        "tests": [{"name": "de-is-emea", "source": "shop", "type": "order",
                   "message": {"country": "DE"},
                   "expect": {"outputs": {"erp": {"country": "DE", "region": "emea"}}}}]}))
    return root


def esb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESB_CONFIG")}
    return subprocess.run([sys.executable, "-m", "esb.bus.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_step_module_in_the_configuration_folder_is_found(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "enrichers.shop:add_region")
    r = esb("routes", "validate", "routes", cwd=project)
    assert r.returncode == 0, r.stderr
    # from another folder, naming the configuration: the same folder is searched
    r = esb("routes", "validate", str(project / "routes"), "--config",
            str(project / "config" / "esb.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = esb("routes", "test", "routes", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_missing_step_module_names_the_configuration_folder(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "enrichment.shop:add_region")
    r = esb("routes", "validate", "routes", cwd=project)
    assert r.returncode == 2
    assert "cannot import 'enrichment.shop'" in r.stderr
    assert f"configuration folder {project}" in r.stderr
