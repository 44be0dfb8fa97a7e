"""``esb init``: a new project folder that passes its own route tests and runs with ``esb run``
from inside it; ``--example`` copies a worked integration; mistakes get one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from esbtest.daemon import DaemonProcess
from esbtest.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def esb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esb.bus.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_starter_project_tests_its_routes_and_runs(tmp_path: Path) -> None:
    made = esb("init", "proj", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "proj"
    assert {"README.md", "config/esb.yaml", "routes/main.yaml", ".gitignore"} <= {
        str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}

    tested = esb("routes", "test", "routes/", cwd=project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 case(s): 2 passed, 0 failed" in tested.stdout

    daemon = DaemonProcess(project, None)
    try:
        daemon.start()
        answer = httpx.post(f"{daemon.url}/in/app/order.created", json={"orderId": "A-1"},
                            headers={"Idempotency-Key": "A-1"}, timeout=10)
        assert answer.status_code == 202, answer.text
        outbox = project / ".esb" / "outbox" / "orders"
        # "[!.]*": a written file, not the adapter's temporary dot-file caught before its rename
        assert wait_until(lambda: any(outbox.glob("[!.]*")), 20), daemon.log()
        written = next(outbox.glob("[!.]*"))
        assert json.loads(written.read_text()) == {"orderId": "A-1"}
    finally:
        assert daemon.stop() == 0


def test_list_names_the_examples_and_example_copies_one(tmp_path: Path) -> None:
    listed = esb("init", "--list", cwd=tmp_path)
    assert listed.returncode == 0
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert "ecommerce" in names
    assert "fixed-width" not in names  # a plugin package, not a project

    made = esb("init", "shop", "--example", "ecommerce", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    shop = tmp_path / "shop"
    for name in ("README.md", "fakes.py", "config/esb.yaml", "routes/orders.yaml",
                 "samples/order-us.json"):
        assert (shop / name).read_bytes() == (ROOT / "examples" / "ecommerce" / name
                                              ).read_bytes()
    assert not list(shop.rglob("__pycache__"))
    tested = esb("routes", "test", "routes/", cwd=shop)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_mistakes_get_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    taken = esb("init", "busy", cwd=tmp_path)
    assert taken.returncode == 1
    assert taken.stderr.strip() == ("esb: busy already exists and is not an empty folder; "
                                    "name a new one")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"

    unknown = esb("init", "x", "--example", "nope", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "no example named 'nope'" in unknown.stderr and "esb init --list" in unknown.stderr
    assert not (tmp_path / "x").exists()

    bare = esb("init", cwd=tmp_path)
    assert bare.returncode == 2 and "esb init DIR" in bare.stderr
