"""The worked legacy example (examples/fixed-width) stays a working plugin: it installs, is
discovered through its entry point, passes its own suite (the kit's contracts included) and
carries a mainframe extract through a real daemon into JSON files.

It is installed into a throwaway virtualenv layered on the suite's own (``esbtest.venv``), never
into the environment the suite runs in."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from esbtest.daemon import DaemonProcess
from esbtest.venv import Overlay, copy_project, overlay
from esbtest.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fixed-width"
DATA = EXAMPLE / "tests" / "data"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Overlay:
    """A virtualenv with the example installed as its README says (``pip install -e``), from a
    copy so the install writes nothing into the repository."""
    where = tmp_path_factory.mktemp("fixedwidth")
    env = overlay(where / "venv")
    env.install(copy_project(EXAMPLE, where / "fixed-width"))
    return env


def test_the_example_is_discovered_through_its_entry_point(installed: Overlay) -> None:
    out = installed.run("-m", "esb.bus.cli.main", "adapters", "list", "--json", timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["fixedwidth"]["package"] == "esb-adapter-fixedwidth"
    assert rows["fixedwidth"]["directions"] == "inbound,outbound"


def test_the_example_passes_its_own_suite(installed: Overlay) -> None:
    project = installed.root.parent / "fixed-width"
    result = installed.pytest(project, "-q", timeout=120,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_a_dropped_extract_arrives_as_json_through_a_daemon(installed: Overlay,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "layouts").mkdir(parents=True)
    shutil.copy(DATA / "custmast.layout.yaml", root / "layouts" / "custmast.yaml")
    config = {
        "bus": {"url": "embedded"},
        "sources": {"mainframe": {"adapter": "fixedwidth", "directory": "inbox",
                                  "layout": "layouts/custmast.yaml", "type": "customer.updated",
                                  "pattern": "*.DAT", "poll_interval": 0.1}},
        "destinations": {"crm": {"adapter": "file", "directory": "out"}},
    }
    routes = {"customers.yaml": {"routes": [
        {"name": "customers-to-crm", "from": ["mainframe"],
         "match": {"type": ["customer.updated"], "data": {"status": ["A", "S"]}},
         "to": ["crm"]}]}}
    daemon = DaemonProcess(root, config, routes, python=installed.python)
    try:
        daemon.start()
        (root / "inbox" / ".CUSTMAST.part").write_bytes((DATA / "CUSTMAST.D240611.DAT")
                                                         .read_bytes())
        (root / "inbox" / ".CUSTMAST.part").rename(root / "inbox" / "CUSTMAST.D240611.DAT")
        wait_until(lambda: len(list((root / "out").glob("*.json"))) >= 3, "three JSON files",
                   timeout=30, daemon=daemon)
        arrived = sorted((json.loads(p.read_text()) for p in (root / "out").glob("*.json")),
                         key=lambda d: d["customer_id"])
        assert [d["customer_id"] for d in arrived] == [1042, 1043, 1044], daemon.log()
        assert arrived[0] == {"record_type": "CM", "customer_id": 1042,
                              "name": "ACME TOOLING GMBH", "country": "DE",
                              "balance": 12500.75, "opened": "1998-03-01", "status": "A"}
        assert (root / "inbox" / "done" / "CUSTMAST.D240611.DAT").exists()
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_two_workers_pick_each_file_once(installed: Overlay, tmp_path: Path,
                                         rabbit: Any) -> None:
    """``--workers 2``: the folder picker declares ``one-instance``, so one worker at a time
    scans the inbox (no file is taken twice, none vanishes under the other)."""
    root = tmp_path / "w"
    (root / "layouts").mkdir(parents=True)
    shutil.copy(DATA / "custmast.layout.yaml", root / "layouts" / "custmast.yaml")
    config = {
        "bus": rabbit.bus("crm", lease_retry="100ms"),
        "sources": {"mainframe": {"adapter": "fixedwidth", "directory": "inbox",
                                  "layout": "layouts/custmast.yaml", "type": "customer.updated",
                                  "pattern": "*.DAT", "poll_interval": 0.05}},
        "destinations": {"crm": {"adapter": "file", "directory": "out"}},
    }
    routes = {"all.yaml": {"routes": [{"name": "all", "match": {}, "to": ["crm"]}]}}
    daemon = DaemonProcess(root, config, routes, run_args=["--workers", "2"],
                           python=installed.python)
    template = "CM{:08d}ACME TOOLING GMBH   DE0000125007519980301A\r\n"
    N = 150  # records a file
    try:
        daemon.start()
        # Both workers up (the second starts once the first runs), so both compete for files.
        wait_until(lambda: running_workers(daemon) >= 2, "both workers running", timeout=60,
                   daemon=daemon)
        inbox = root / "inbox"
        inbox.mkdir(exist_ok=True)
        for f in range(3):
            part = inbox / f".F{f}.part"
            part.write_text("".join(template.format(f * 1000 + n) for n in range(N)))
            part.rename(inbox / f"F{f}.DAT")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list((root / "out").glob("*.json"))) < 3 * N:
            time.sleep(0.1)
        time.sleep(1.0)  # a second pick of a file would show now
        ids = [json.loads(p.read_text())["customer_id"] for p in (root / "out").glob("*.json")]
        assert sorted(ids) == sorted(f * 1000 + n for f in range(3) for n in range(N)), \
            daemon.log()
        assert sorted(p.name for p in (inbox / "done").iterdir()) == ["F0.DAT", "F1.DAT",
                                                                     "F2.DAT"]
        assert "FileNotFoundError" not in daemon.log(200_000)
    finally:
        assert daemon.stop() == 0, daemon.log()


def running_workers(daemon: DaemonProcess) -> int:
    """How many of the daemon's workers logged that they run (its log is JSON lines)."""
    count = 0
    for line in daemon.log_path.read_text(errors="replace").splitlines():
        if '"esb running"' in line:
            with contextlib.suppress(ValueError):
                count += json.loads(line).get("event") == "esb running"
    return count
