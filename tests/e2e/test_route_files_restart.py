"""A restarted daemon runs the stored route version, not edited files in ``routes/`` — and
says so, naming what differs and the command that deploys the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from esbtest.logs import log_events

ONE = {"routes": [{"name": "all", "to": ["out"]}]}
TWO = {"routes": [{"name": "all", "to": ["out"]}, {"name": "copy", "to": ["out"]}]}


def test_edited_route_files_are_named_in_a_warning_at_start(tmp_path: Path,
                                                            daemon_factory: Any) -> None:
    d = daemon_factory({"destinations": {"out": {"adapter": "file",
                                                 "directory": str(tmp_path / "out")}}},
                       {"a.yaml": ONE})
    d.start()
    assert d.stop() == 0
    (d.root / "routes" / "a.yaml").write_text(json.dumps(TWO))
    (d.root / "routes" / "b.yaml").write_text(json.dumps(ONE).replace('"all"', '"more"'))
    d.start()
    warnings = [e for e in log_events(d)
                if e.get("event", "").startswith("the route files differ")]
    assert len(warnings) == 1, d.log()
    w = warnings[0]
    assert w["version"] == 1 and w["changed"] == {"added": ["b.yaml"], "modified": ["a.yaml"]}
    assert w["deploy"] == "esb routes deploy routes"
    assert d.admin("GET", "/admin/routes").json()["version"] == 1  # the stored version runs
    # the command it names deploys them
    env = {**os.environ, "ESB_ADMIN_URL": d.url, "ESB_ADMIN_TOKEN": d.token}
    r = subprocess.run([sys.executable, "-m", "esb.bus.cli.main", *w["deploy"].split()[1:]],
                       cwd=d.root, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("deployed version 2")
    assert d.stop() == 0
    d.start()  # files and store agree now: no warning
    assert d.log(200_000).count("the route files differ") == 1
