"""XSLT 1.0 transforms run in a sandbox process, where run time and memory can be bounded.

libxslt cannot be stopped from outside once it runs, nor told to stop building a result tree:
a stylesheet that multiplies its output (or loops) would take the whole daemon's memory and
time. So each esb process hands its transforms to one long-lived child process
(:mod:`esb.transformers.xslt_worker`) over a pipe: the child compiles each stylesheet once and
runs it under an address-space limit (``max_memory``), and the parent waits at most ``timeout``
for the answer. A transform past either is killed with the child (a new one starts for the next
message) and fails as a :class:`~esb.bus.errors.TransformError`, so the envelope is
dead-lettered. Measured cost: see docs/performance.md (XSLT) and ``bench/xslt_bench.py``.

The exchange with the child has two drivers over one pipe: :meth:`XsltProcess.run` blocks its
thread (the command line, route tests run in a thread), :meth:`XsltProcess.run_async` is awaited on
the event loop (the daemon): requests are written when the pipe is writable (up to
:data:`PIPELINE` ahead, which the child takes in order; those of one turn of the loop in one
write, which wakes the child once) and answers read when it is readable, the timeout is a loop
timer. A thread's transforms and the loop's take turns (one lock).

The one :class:`XsltProcess` per esb process (:func:`shared_process`) is process-wide state, as
libxslt's own is; it is created on first use and rebuilt in a forked child.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
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


#: How long the event loop's driver waits before it looks again when a thread's transform holds
#: the sandbox process (seconds).
_RETRY = 0.001
#: Bytes read from the answer pipe at a time.
_READ = 64 * 1024
#: Requests the event loop's driver writes ahead to the child (see ``_next``).
PIPELINE = 4


def _frame(payload: bytes) -> bytes:
    """``payload`` framed as :class:`multiprocessing.connection.Connection` frames it (the
    child reads with one)."""
    n = len(payload)
    if n > 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", n) + payload
    return struct.pack("!i", n) + payload


def _framed(buf: bytearray) -> bytes | None:
    """The first whole frame's payload in ``buf`` (removed from it), or None: not all here."""
    if len(buf) < 4:
        return None
    (n,), start = struct.unpack_from("!i", buf), 4
    if n == -1:
        if len(buf) < 12:
            return None
        (n,), start = struct.unpack_from("!Q", buf, 4), 12
    if len(buf) < start + n:
        return None
    payload = bytes(buf[start:start + n])
    del buf[:start + n]
    return payload


def _timed_out(timeout: float) -> XsltRunError:
    return XsltRunError(f"stopped: the stylesheet ran longer than its timeout ({timeout:g} s)")


@dataclass(eq=False)
class _Exchange:
    """One request of the event loop's driver, and the future its caller awaits."""

    loop: asyncio.AbstractEventLoop
    spec: RunSpec
    data: str | bytes
    params: dict[str, str]
    timeout: float
    future: asyncio.Future[tuple[str, Any]]

    @property
    def gone(self) -> bool:
        """Its caller stopped waiting (cancelled), or its loop is closed."""
        return self.future.done() or self.loop.is_closed()


def _settle(ex: _Exchange, answer: tuple[str, Any] | None = None, *,
            error: BaseException | None = None) -> None:
    """Hand ``ex``'s caller its answer or error (unless it stopped waiting)."""
    if ex.gone:
        return
    if error is not None:
        ex.future.set_exception(error)
    else:
        ex.future.set_result(answer)  # type: ignore[arg-type]


class XsltProcess:
    """The parent's end of the sandbox process: a thread's request or the event loop's
    pipeline at a time (a lock), the child started on first use and again after it was
    killed or died."""

    def __init__(self) -> None:
        #: Held for each exchange, by a thread (:meth:`run`) or by the loop's driver.
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        #: Keys of the specs the running child has been sent.
        self._known: set[str] = set()
        #: The event loop's requests waiting for their turn, and those written to the child
        #: (oldest first), while the loop that sent them (``_loop``) holds the lock.
        self._queue: deque[_Exchange] = deque()
        self._flight: deque[_Exchange] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out = bytearray()  # written as the pipe takes it
        self._answers = bytearray()  # read, not yet a whole answer
        self._timer: asyncio.TimerHandle | None = None
        self._reading = self._writing = False
        #: Threads waiting in :meth:`run`: the loop sends no more until they had their turn.
        self._threads = 0
        self._counting = threading.Lock()
        self._pumping = False
        #: The loop a look-again (``_RETRY``) is due on, if any.
        self._retrying: asyncio.AbstractEventLoop | None = None
        #: The loop a send at the end of its turn (``_send_soon``) is due on, if any.
        self._soon: asyncio.AbstractEventLoop | None = None

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
        :class:`XsltRunError` with what went wrong. Blocks this thread: on an event loop, use
        :meth:`run_async`."""
        if self._loop is not None and _running_loop() is self._loop:
            # the loop's driver holds the sandbox and needs this very thread to let go
            raise RuntimeError("XsltProcess.run called on the event loop; await run_async")
        self._abandon_closed_loop()
        with self._counting:
            self._threads += 1
        try:
            self._lock.acquire()
        finally:
            with self._counting:
                self._threads -= 1
        try:
            self._ensure()
            assert self._send is not None and self._recv is not None
            deadline = time.monotonic() + timeout
            try:
                self._write_all(self._request(spec, data, params), deadline)
                if not self._recv.poll(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError
                status, value = pickle.loads(self._recv.recv_bytes())
            except TimeoutError:
                self._kill()
                raise _timed_out(timeout) from None
            except (EOFError, OSError):
                raise self._ended(spec) from None
            if status == "ended":
                self._kill()  # it is exiting; the next message gets a fresh one
        finally:
            self._lock.release()
        return _result(status, value)

    async def run_async(self, spec: RunSpec, data: str | bytes, params: dict[str, str],
                        timeout: float) -> str | bytes:
        """:meth:`run` awaited on the running event loop: the request is written and the
        answer read as the pipe allows, the timeout is a loop timer, so the loop serves other
        work meanwhile. Requests are run in order. A caller cancelled while its request is in
        flight leaves it to finish (its answer is dropped)."""
        loop = asyncio.get_running_loop()
        self._abandon_closed_loop()
        ex = _Exchange(loop, spec, data, params, timeout, loop.create_future())
        self._queue.append(ex)
        if self._soon is None:
            # Sent at the end of this turn of the loop, with the requests of the other
            # deliveries of the turn: one write, and one wake-up of the child.
            self._soon = loop
            loop.call_soon(self._send_soon)
        elif self._soon is not loop:
            self._next()
        status, value = await ex.future
        return _result(status, value)

    def _request(self, spec: RunSpec, data: str | bytes, params: dict[str, str]) -> bytes:
        """The framed request (the lock held); the spec travels once per child, after that
        its key stands for it."""
        known = spec.key in self._known
        request = pickle.dumps((spec.key, None if known else spec, data, params),
                               protocol=pickle.HIGHEST_PROTOCOL)
        self._known.add(spec.key)
        return _frame(request)

    def _write_all(self, data: bytes, deadline: float) -> None:
        assert self._send is not None
        fd, view = self._send.fileno(), memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                # (a request larger than the pipe: the child reads it as it comes)
                if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                    raise TimeoutError from None

    def _ended(self, spec: RunSpec) -> XsltRunError:
        """The child is gone mid-exchange: reaped, and why, for the TransformError."""
        code = self._reap()
        return XsltRunError(
            f"stopped: the transform process ended ({_exit_text(code)}); the stylesheet "
            f"needed more than its max_memory ({spec.max_memory} bytes)")

    # The event loop's driver: callbacks only. Up to PIPELINE requests are written ahead, so
    # the child goes from one to the next without waiting for this loop, and the answers that
    # came meanwhile are read together. The child takes them in order: the oldest request in
    # flight is the one it is running (its timeout runs from when it became the oldest).

    def _next(self) -> None:
        """Send waiting requests while there is room in the pipeline."""
        if self._pumping:  # (called back from inside: the loop below goes on)
            return
        self._pumping = True
        try:
            while True:
                self._pump()
                if not self._out:
                    break
                # One write for all the requests of this turn. A write that finds the child
                # gone restarts it: its requests are queued again, for a fresh child.
                self._flush()
                if self._flight or not self._queue:
                    break
        finally:
            self._pumping = False

    def _pump(self) -> None:
        queue, flight = self._queue, self._flight
        while self._live_queue() and len(flight) < PIPELINE and not self._threads:
            ex = queue[0]
            if not flight:
                if not self._lock.acquire(blocking=False):
                    # A thread's transform (route tests, say) holds the sandbox.
                    self._retry_later(ex.loop)
                    return
                self._loop = ex.loop
            elif ex.loop is not self._loop:
                return  # another loop's turn comes when this pipeline is empty
            queue.popleft()
            try:
                if not flight:  # (a child that died with requests in flight: see _readable)
                    self._ensure()
                self._out += self._request(ex.spec, ex.data, ex.params)
            except BaseException as exc:
                if not flight:
                    self._loop = None
                    self._lock.release()
                _settle(ex, error=exc)
                continue
            flight.append(ex)
            if len(flight) == 1:
                self._start_timer()
        if self._threads and not flight and self._live_queue():
            self._retry_later(queue[0].loop)  # (on a live loop, for a live caller)

    def _live_queue(self) -> bool:
        """Whether a request waits whose caller still does: those that stopped waiting while
        queued (cancelled, their loop closed) are dropped from its head."""
        queue = self._queue
        while queue and queue[0].gone:
            queue.popleft()
        return bool(queue)

    def _send_soon(self) -> None:
        loop, self._soon = self._soon, None
        try:
            self._next()
        except Exception as exc:
            # Raised in a callback it would reach only the loop's handler: the requests
            # this loop queued fail with it instead, as when they were sent from run_async.
            for ex in [ex for ex in self._queue if ex.loop is loop]:
                self._queue.remove(ex)
                _settle(ex, error=exc)

    def _retry_later(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._retrying is None:
            self._retrying = loop
            loop.call_later(_RETRY, self._retry)

    def _retry(self) -> None:
        self._retrying = None
        self._next()

    def _start_timer(self) -> None:
        ex = self._flight[0]
        assert self._loop is not None
        self._timer = self._loop.call_later(ex.timeout, self._expired)

    def _flush(self) -> None:
        assert self._send is not None and self._recv is not None and self._loop is not None
        fd = self._send.fileno()
        try:
            while self._out:
                del self._out[:os.write(fd, self._out)]
        except BlockingIOError:
            if not self._writing:
                self._loop.add_writer(fd, self._flush)
                self._writing = True
        except OSError:  # the child is gone
            self._unwatch()  # before the pipes are closed
            self._restart(self._ended(self._flight[0].spec))
            return
        else:
            if self._writing:
                self._loop.remove_writer(fd)
                self._writing = False
        if not self._reading:
            self._loop.add_reader(self._recv.fileno(), self._readable)
            self._reading = True

    def _readable(self) -> None:
        assert self._recv is not None
        try:
            # The read end stays blocking (the threads' driver reads it too); it is readable
            # now, so this returns what is there without waiting.
            chunk = os.read(self._recv.fileno(), _READ)
        except OSError:
            chunk = b""
        if not chunk:  # the child is gone, while running the oldest request
            self._unwatch()  # before the pipes are closed
            self._restart(self._ended(self._flight[0].spec))
            return
        self._answers += chunk
        flight = self._flight
        while flight:
            payload = _framed(self._answers)
            if payload is None:
                break
            ex = flight.popleft()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            try:
                status, value = pickle.loads(payload)
            except Exception as exc:
                _settle(ex, error=exc)
                self._restart()
                return
            _settle(ex, (status, value))
            if status == "ended":  # the child is exiting: the rest go to a fresh one
                self._restart()
                return
            if flight:
                self._start_timer()
        if not flight:
            self._idle()
        self._next()

    def _expired(self) -> None:
        self._timer = None
        self._restart(_timed_out(self._flight[0].timeout))

    def _restart(self, error: BaseException | None = None) -> None:
        """The oldest request in flight fails with ``error`` (None: it was answered); the
        child is killed; the requests behind it, which it never started, wait for a fresh
        one."""
        flight = self._flight
        if error is not None and flight:
            _settle(flight.popleft(), error=error)
        self._unwatch()
        self._kill()
        self._queue.extendleft(reversed(flight))
        flight.clear()
        self._idle()
        self._next()

    def _idle(self) -> None:
        """Nothing in flight: let go of the pipes' watches, the timer and the sandbox."""
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out.clear()
        self._answers.clear()
        if self._loop is not None:
            self._loop = None
            self._lock.release()

    def _unwatch(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            if self._writing and self._send is not None:
                loop.remove_writer(self._send.fileno())
            if self._reading and self._recv is not None:
                loop.remove_reader(self._recv.fileno())
        self._reading = self._writing = False

    def _abandon_closed_loop(self) -> None:
        """A loop closed with requests in flight (a test's loop, say) never finishes them:
        the child, which may still be answering, is killed and the sandbox let go."""
        if self._retrying is not None and self._retrying.is_closed():
            self._retrying = None
        if self._soon is not None and self._soon.is_closed():
            self._soon = None
        if self._loop is not None and self._loop.is_closed():
            self._flight.clear()
            self._kill()
            self._idle()

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
        # Requests are written without blocking (a large one as the child takes it, and the
        # loop's driver waits for the pipe to be writable); answers are read when readable.
        os.set_blocking(to_child_w, False)
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


def _result(status: str, value: Any) -> str | bytes:
    if status == "ok":
        return value  # type: ignore[no-any-return]
    raise XsltRunError(value)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
