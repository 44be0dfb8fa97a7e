"""The workers of ``esb run --workers N`` telling each other whether they accept messages.

They serve one address, so ``/readyz`` is answered by whichever worker the connection reaches,
and the message after it may land on another whose broker links are still being
rebuilt. Each serving worker therefore posts its own readiness (:mod:`.readiness`) to a file of
its seat in the supervisor's private directory, and a worker answers ``/readyz`` 200 only when
it and every other posted worker are ready.

A worker posts once it serves and withdraws its post when it stops serving (a stop begins);
the supervisor withdraws the post of a worker that died. A worker that does not serve takes no
connection, so it has no say. A post lags the worker's state by at most :data:`POST_EVERY`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from esb.bus.atomicfile import write_atomically

#: How often a serving worker posts its readiness (only a change is written).
POST_EVERY = 0.2
_PREFIX = "ready-"


class WorkerBoard:
    """The posts of the workers sharing ``directory`` (the supervisor's private directory);
    ``index`` is this worker's seat (1-based), 0 for the supervisor itself."""

    def __init__(self, directory: str | Path, index: int = 0) -> None:
        self.dir = Path(directory) / "readiness"
        self.index = index
        self._posted: str | None = None  # what this seat's file says ("" for ready)

    def _file(self, index: int) -> Path:
        return self.dir / f"{_PREFIX}{index}"

    def post(self, reason: str | None) -> None:
        """Post this worker's readiness: ``None`` when it accepts messages, else why not.
        Written only when it changed, atomically (a reader never sees half a post)."""
        text = reason or ""
        if text == self._posted:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self._file(self.index), text.encode())
        self._posted = text

    def withdraw(self, index: int | None = None) -> None:
        """Remove the post of seat ``index`` (default: this worker's): it serves no more."""
        seat = self.index if index is None else index
        with contextlib.suppress(FileNotFoundError):
            self._file(seat).unlink()
        if seat == self.index:
            self._posted = None

    def others(self) -> str | None:
        """Why another serving worker does not accept messages (the first found), or None."""
        try:
            files = sorted(self.dir.glob(f"{_PREFIX}*"))
        except OSError:
            return None
        for path in files:
            seat = path.name.removeprefix(_PREFIX)
            if seat == str(self.index):
                continue
            try:
                reason = path.read_text(encoding="utf-8")
            except FileNotFoundError:  # withdrawn meanwhile: it serves no more
                continue
            if reason:
                return f"worker {seat}: {reason}"
        return None

    async def keep_posting(self, own: Callable[[], str | None],
                           every: float = POST_EVERY) -> None:
        """Post ``own()`` every ``every`` seconds until cancelled, then withdraw."""
        try:
            while True:
                self.post(own())
                await asyncio.sleep(every)
        finally:
            self.withdraw()
