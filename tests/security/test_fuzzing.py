"""The fuzz harness (tests/fuzz): every seed and every input a past run found replays clean in
process, and a short coverage-guided run of each target (atheris) finds no crash. The longer
run is documented in docs/security.md (Fuzzing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ))

import targets  # noqa: E402

#: Seconds of fuzzing per target in the normal suite.
SHORT_RUN = 3


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_and_findings_replay_clean(name: str) -> None:
    inputs = targets.seeds(name)
    assert inputs, f"no seed corpus for {name}"
    for data in inputs:
        targets.TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_a_short_fuzz_run_finds_no_crash(name: str, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(FUZZ / "run.py"), name,
                          f"-max_total_time={SHORT_RUN}", "-timeout=10"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*"))
    found = [c.read_bytes()[:300] for c in crashes]
    assert run.returncode == 0 and not crashes, (found, run.stderr[-3000:])
    assert "Done" in run.stderr or "DONE" in run.stderr, run.stderr[-2000:]
