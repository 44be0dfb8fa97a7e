"""Run one fuzz target under atheris (libFuzzer), coverage-guided over esb's own modules.

    python tests/fuzz/run.py TARGET [libFuzzer options]     e.g. -max_total_time=600

TARGET is one of tests/fuzz/targets.py's TARGETS (xml, cloudevent, webhook, graphql, routes).
The seed corpus is tests/fuzz/corpus/TARGET; new inputs go to a scratch folder, crashes to
``crash-*`` files in the working folder. Exit status 0: no crash found.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

with atheris.instrument_imports(include=["esb"]):
    import targets


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: run.py {{{','.join(targets.TARGETS)}}} [libFuzzer options]")
    name = sys.argv[1]
    target = targets.TARGETS[name]
    scratch = Path(tempfile.mkdtemp(prefix=f"esb-fuzz-{name}-"))
    seeds = HERE / "corpus" / name
    if seeds.is_dir():
        for seed in seeds.iterdir():
            shutil.copy(seed, scratch)
    args = [sys.argv[0], *sys.argv[2:], "-rss_limit_mb=2048", str(scratch)]
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
