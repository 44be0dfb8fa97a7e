"""Run fuzz targets under atheris (libFuzzer), coverage-guided over esb's own modules.

    python tests/fuzz/run.py TARGET [libFuzzer options]     e.g. -max_total_time=600
    python tests/fuzz/run.py TARGET,TARGET,... [libFuzzer options]

TARGET is one of tests/fuzz/targets.py's TARGETS (xml, cloudevent, webhook, graphql, routes).
The seed corpus is tests/fuzz/corpus/TARGET.

One target: new inputs go to a scratch folder, crashes to ``crash-*`` files in the working
folder, libFuzzer's report to stderr. Exit status 0: no crash found.

Several targets: each is fuzzed in turn, with the same options, in a child forked once esb is
imported and instrumented (that takes about a second, once rather than once a target). Target
T works in the folder T of the working folder: its new inputs in T/corpus, its crashes in
T/crash-*, its report in T/fuzz.log and its exit status in T/exit-status. Exit status 0: no
target crashed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import atheris

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

with atheris.instrument_imports(include=["esb"]):
    import targets


def fuzz(name: str, options: list[str], scratch: Path) -> NoReturn:
    """Fuzz one target from its seeds, new inputs going to `scratch`; libFuzzer exits."""
    seeds = HERE / "corpus" / name
    if seeds.is_dir():
        for seed in seeds.iterdir():
            shutil.copy(seed, scratch)
    atheris.Setup([sys.argv[0], *options, "-rss_limit_mb=2048", str(scratch)],
                  targets.TARGETS[name])
    atheris.Fuzz()
    raise SystemExit(0)  # not reached: libFuzzer ends the process


def fuzz_each(names: list[str], options: list[str]) -> int:
    """Fuzz each target in a forked child, in its own folder (see the module doc)."""
    failed = []
    for name in names:
        folder = Path(name).resolve()
        (folder / "corpus").mkdir(parents=True, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            os.chdir(folder)
            log = os.open("fuzz.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            # Never returns: libFuzzer exits the child, or a crash raises SystemExit out of
            # here and the child exits through the interpreter, whose exit lets libFuzzer
            # write the crash-* file (os._exit would skip that).
            fuzz(name, options, folder / "corpus")
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        (folder / "exit-status").write_text(f"{code}\n")
        if code != 0:
            failed.append(name)
    if failed:
        print(f"crashed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else []
    if not names or any(name not in targets.TARGETS for name in names):
        sys.exit(f"usage: run.py {{{','.join(targets.TARGETS)}}}[,...] [libFuzzer options]")
    if len(names) > 1:
        sys.exit(fuzz_each(names, sys.argv[2:]))
    fuzz(names[0], sys.argv[2:], Path(tempfile.mkdtemp(prefix=f"esb-fuzz-{names[0]}-")))


if __name__ == "__main__":
    main()
