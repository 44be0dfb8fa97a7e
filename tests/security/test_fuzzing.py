"""The fuzz harness (tests/fuzz): every seed and every input a past run found replays clean in
process, and a short coverage-guided run of each target (atheris) finds no crash. The longer
run is documented in docs/security.md (Fuzzing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from esbtest.strength import seconds

FUZZ = Path(__file__).parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ))

import targets  # noqa: E402

#: Seconds of fuzzing per target: in the normal suite, and under --long.
SHORT_RUN = int(seconds(3, long=30))


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_and_findings_replay_clean(name: str) -> None:
    inputs = targets.seeds(name)
    assert inputs, f"no seed corpus for {name}"
    for data in inputs:
        targets.TARGETS[name](data)


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short run of every target, in turn: ``run.py`` imports and instruments esb once and
    forks a child per target, each working in the folder named after it (see its doc)."""
    where = tmp_path_factory.mktemp("fuzz")
    names = sorted(targets.TARGETS)
    subprocess.run([sys.executable, str(FUZZ / "run.py"), ",".join(names),
                    f"-max_total_time={SHORT_RUN}", "-timeout=10"],
                   cwd=where, capture_output=True, text=True,
                   timeout=60 + len(names) * (SHORT_RUN + 30))
    return where


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_a_short_fuzz_run_finds_no_crash(name: str, short_runs: Path) -> None:
    folder = short_runs / name
    log = (folder / "fuzz.log").read_text(errors="replace")
    status = (folder / "exit-status").read_text().strip()
    crashes = sorted(folder.glob("crash-*")) + sorted(folder.glob("timeout-*"))
    found = [c.read_bytes()[:300] for c in crashes]
    assert status == "0" and not crashes, (found, log[-3000:])
    assert "Done" in log or "DONE" in log, log[-2000:]
