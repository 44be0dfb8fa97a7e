"""The ``esb`` command line run in the test's own process.

It runs the console script's own entry point (:func:`esb.bus.cli.main.main`: its option
hoisting, its one ``esb: ...`` error line, its exit codes) with the streams, stdin, environment
and working folder swapped for the call, as ``click.testing`` does. A new interpreter per
command costs a third of a second of CPU or more (its imports; ``esb adapters list`` imports
every adapter) — many seconds in a module that runs the tool a dozen times. ``esb run`` (a
daemon, which configures logging and signals for its process) and tests about the installed
command itself still start a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from esb.bus.cli.main import main


def run(*args: str, cwd: Path | None = None, env: Mapping[str, str | None] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``esb ARGS`` in ``cwd`` (the process's working folder for the call) with ``env`` set
    for the call (``None`` unsets a variable) and ``input`` on stdin; the exit code, stdout
    and stderr as :func:`subprocess.run` gives them."""
    # PYTHONUNBUFFERED: main() sets it; named here so it is put back afterwards.
    swapped = {"PYTHONUNBUFFERED": "1", **(env or {})}
    with contextlib.chdir(cwd or os.getcwd()), \
            CliRunner().isolation(input=input, env=swapped) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["esb", *args], code, out.getvalue().decode(),
                                       err.getvalue().decode())


def esb(d: Any, *args: str, input: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """``esb ARGS`` against daemon ``d`` (its admin URL and token), with ``input`` on stdin."""
    return run(*args, input=input,
               env={"ESB_ADMIN_URL": d.url, "ESB_ADMIN_TOKEN": d.token, **(env or {})})
