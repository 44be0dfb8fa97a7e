"""The XSLT sandbox process (see :mod:`esb.transformers.xslt_process`): read a request from the
parent, run the stylesheet, answer; exit when the parent goes away.

Answers are ("ok", result), ("error", message) or ("ended", message): the last after a failure
that may have left libxml2 unusable (out of memory), when this process exits.

Run as ``python -m esb.transformers.xslt_worker`` with ``ESB_XSLT_FDS=<read fd>,<write fd>``.
"""

from __future__ import annotations

import os
import pickle
import resource
import sys
from multiprocessing.connection import Connection
from pathlib import Path

from lxml import etree

from esb.transformers.stylesheet import StylesheetError, load_stylesheet
from esb.transformers.xslt import compile_lxml, run_sheet
from esb.transformers.xslt_process import RunSpec

#: Room for the compiled stylesheets and the interpreter's own growth above ``max_memory``.
_HEADROOM = 64 * 1024 * 1024


class _Memory:
    """Keeps the address-space limit at (size at start + headroom + the request's
    ``max_memory``).

    Only the soft limit moves: an unprivileged process may raise it again for the next
    request's larger ``max_memory`` (it could not raise a hard limit it had lowered)."""

    def __init__(self) -> None:
        self.start = _address_space()
        self.value: int | None = None

    def limit(self, max_memory: int) -> None:
        value = self.start + _HEADROOM + max_memory
        if value != self.value:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(resource.RLIMIT_AS, (value, hard))
            self.value = value

    def exhausted(self) -> bool:
        """Whether a failed transform most likely ran out of memory: libxml2 reports a failed
        allocation only as an expression that "failed to evaluate", and the allocation that
        failed (a string doubled, a node set copied) is about as large as what was already
        held. So: the process's peak came past half of what the limit allows."""
        if self.value is None:
            return False
        return _peak_address_space() - self.start >= (self.value - self.start) // 2


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _peak_address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    return 0


def serve(requests: Connection, answers: Connection) -> None:
    memory = _Memory()
    compiled: dict[str, etree.XSLT] = {}
    specs: dict[str, RunSpec] = {}
    while True:
        try:
            raw = requests.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        key, sent, data, params = pickle.loads(raw)
        if sent is not None:
            specs[key] = sent
        spec: RunSpec = specs[key]
        memory.limit(spec.max_memory)
        try:
            xslt = compiled.get(spec.key)
            if xslt is None:
                xslt = compiled[spec.key] = compile_lxml(load_stylesheet(Path(spec.path)))
            answer = run_sheet(xslt, spec, data, params)
        except (StylesheetError, etree.XSLTParseError) as exc:
            answer = ("error", f"stylesheet no longer compiles: {exc}")
        except MemoryError:
            answer = ("error", "out of memory")
        except Exception as exc:  # the parent reports it; this process ends
            answers.send_bytes(pickle.dumps(("ended", f"stopped: the transform process failed: "
                                                      f"{type(exc).__name__}: {exc}")))
            return
        if answer[0] == "error" and (answer[1] == "out of memory" or memory.exhausted()):
            # libxml2 may be left half-way through an allocation failure: answer, then exit
            # (the parent starts a fresh process for the next message).
            detail = "" if answer[1] == "out of memory" else f" ({answer[1]})"
            answers.send_bytes(pickle.dumps(("ended", f"stopped: the stylesheet needed more "
                                                      f"than its max_memory ({spec.max_memory} "
                                                      f"bytes){detail}")))
            return
        answers.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def main() -> None:
    # lxml reports errors it cannot record (out of memory) as "unraisable": not our log's job.
    sys.unraisablehook = lambda _: None
    read_fd, write_fd = (int(fd) for fd in os.environ["ESB_XSLT_FDS"].split(","))
    serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False))


if __name__ == "__main__":
    main()
