"""XSLT 1.0 transforms run in a sandbox process, where run time and memory can be bounded.

libxslt cannot be stopped from outside once it runs, nor told to stop building a result tree:
a stylesheet that multiplies its output (or loops) would take the whole daemon's memory and
time. So each esb process hands its transforms to one long-lived child process
(:mod:`esb.transformers.xslt_worker`) over a pipe: the child compiles each stylesheet once and
runs it under an address-space limit (``max_memory``), and the parent waits at most ``timeout``
for the answer. A transform past either is killed with the child (a new one starts for the next
message) and fails as a :class:`~esb.bus.errors.TransformError`, so the envelope is
dead-lettered. Measured cost: see docs/performance.md (XSLT) and ``bench/xslt_bench.py``.

The one :class:`XsltProcess` per esb process (:func:`shared_process`) is process-wide state, as
libxslt's own is; it is created on first use and rebuilt in a forked child.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from esb.bus.xmlsafe import XmlLimits


@dataclass(frozen=True)
class RunSpec:
    """What the child needs to run one stylesheet (sent with every request; small)."""

    key: str  # path + content digest: a changed file is compiled anew
    path: str
    static: dict[str, Any]  # the step's ``params`` as configured
    max_bytes: int
    max_depth: int
    limits: XmlLimits
    encoding: str | None
    max_output: int
    max_memory: int


class XsltRunError(Exception):
    """The child refused or failed the transform; the message is for a TransformError."""


class XsltProcess:
    """The parent's end of the sandbox process: one request at a time (a lock), the child
    started on first use and again after it was killed or died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        #: Keys of the specs the running child has been sent.
        self._known: set[str] = set()

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first use)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child now (it takes a few hundred ms to import), if it is not running."""
        with self._lock:
            self._ensure()

    def run(self, spec: RunSpec, data: str | bytes, params: dict[str, str],
            timeout: float) -> str | bytes:
        """The serialized result of ``spec``'s stylesheet on ``data``; raises
        :class:`XsltRunError` with what went wrong."""
        with self._lock:
            self._ensure()
            assert self._send is not None and self._recv is not None
            # The spec travels once per child: after that its key stands for it.
            known = spec.key in self._known
            request = pickle.dumps((spec.key, None if known else spec, data, params),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            self._known.add(spec.key)
            try:
                self._send.send_bytes(request)
                if not self._recv.poll(timeout):
                    self._kill()
                    raise XsltRunError(f"stopped: the stylesheet ran longer than its timeout "
                                       f"({timeout:g} s)")
                status, value = pickle.loads(self._recv.recv_bytes())
                if status == "ended":
                    self._kill()  # it is exiting; the next message gets a fresh one
            except (EOFError, OSError):
                code = self._reap()
                raise XsltRunError(
                    f"stopped: the transform process ended ({_exit_text(code)}); the "
                    f"stylesheet needed more than its max_memory ({spec.max_memory} bytes)"
                ) from None
        if status == "ok":
            return value  # type: ignore[no-any-return]
        raise XsltRunError(value)

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._reap()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**os.environ, "ESB_XSLT_FDS": f"{to_child_r},{from_child_w}"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "esb.transformers.xslt_worker"],
            pass_fds=(to_child_r, from_child_w), env=env, stdin=subprocess.DEVNULL,
            # libxml2 writes to stderr when it runs out of memory (many lines a second)
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> int | None:
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                code = self._proc.wait(5)
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._proc = self._send = self._recv = None
        self._known = set()
        return code


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


_SHARED: tuple[int, XsltProcess] | None = None
_SHARED_LOCK = threading.Lock()


def shared_process() -> XsltProcess:
    """This process's sandbox process (a new one in a forked child)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or _SHARED[0] != os.getpid():
            _SHARED = (os.getpid(), XsltProcess())
        return _SHARED[1]
