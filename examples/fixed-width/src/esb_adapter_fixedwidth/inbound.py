"""fixedwidth inbound: record files dropped into a folder → one envelope per record.

A file is checked whole before anything is accepted: one bad record sends the file to
``error/`` with a ``.reason.txt`` naming every bad line, and nothing of it enters the bus.
A good file's records are accepted in order, and the file moves to ``done/`` only after the
bus confirmed the last one. When the bus is unavailable the file stays in the inbox and the
next poll resumes after the last confirmed record. Each envelope's idempotency key is
``<file>:<content hash>:<line>``, so a record re-sent after a crash is recognised downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from esb.adapters.spec import HttpRoute, InboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import BusError, ConfigError

from esb_adapter_fixedwidth.layout import Layout, RecordError, load_layout
from esb_adapter_fixedwidth.settings import FixedWidthInboundSettings

log = logging.getLogger("esb.adapters.fixedwidth")


class FixedWidthInbound:
    routes: list[HttpRoute] = []

    def __init__(self, settings: FixedWidthInboundSettings, ctx: InboundContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.inbox = _resolve(settings.directory, ctx.config_dir)
        try:
            self.layout: Layout = load_layout(_resolve(settings.layout, ctx.config_dir))
        except ValueError as exc:
            raise ConfigError([f"sources.{ctx.name}.layout: {exc}"]) from exc
        self._progress: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        for folder in (self.inbox, self.inbox / "done", self.inbox / "error"):
            folder.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._poll_forever(), name=f"fixedwidth:{self.ctx.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # a bad file or folder must not end the loop
                log.exception("fixedwidth poll failed", extra={"source": self.ctx.name})
            await asyncio.sleep(self.settings.poll_interval)

    async def poll_once(self) -> None:
        """Take every ready file once; stop early while the bus is unavailable."""
        for path in await asyncio.to_thread(self._ready_files):
            if not await self._take(path):
                return

    def _ready_files(self) -> list[Path]:
        now = time.time()
        ready = []
        for path in self.inbox.glob(self.settings.pattern):
            if path.name.startswith(".") or not path.is_file():
                continue
            mtime = path.stat().st_mtime
            if now - mtime >= self.settings.min_age:
                ready.append((mtime, path.name, path))
        return [p for _, _, p in sorted(ready)]

    async def _take(self, path: Path) -> bool:
        """Accept every record of one file; False when the bus refused (file left as is)."""
        raw = await asyncio.to_thread(path.read_bytes)
        digest = hashlib.sha256(raw).hexdigest()[:16]
        records, problems = self._parse(raw)
        if problems:
            await asyncio.to_thread(self._move_to_error, path, problems)
            return True
        key = (path.name, digest)
        for i in range(self._progress.get(key, 0), len(records)):
            line_no, data = records[i]
            try:
                await self.ctx.accept(self._envelope(path.name, digest, line_no, data))
            except BusError as exc:
                self._progress[key] = i
                log.warning("bus unavailable; %s stays in the inbox: %s", path.name, exc)
                return False
        self._progress.pop(key, None)
        await asyncio.to_thread(_move, path, self.inbox / "done")
        return True

    def _parse(self, raw: bytes) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
        try:
            text = raw.decode(self.settings.encoding)
        except UnicodeDecodeError as exc:
            return [], [f"not {self.settings.encoding} text: {exc}"]
        records, problems = [], []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((line_no, self.layout.parse(line)))
            except RecordError as exc:
                problems.append(f"line {line_no}: {exc}")
        return records, problems

    def _envelope(self, name: str, digest: str, line_no: int, data: dict[str, Any]) -> Envelope:
        return Envelope(source=self.settings.source or self.ctx.name, type=self.settings.type,
                        subject=f"{name}:{line_no}", datacontenttype="application/json",
                        data=data, idempotencykey=f"{name}:{digest}:{line_no}")

    def _move_to_error(self, path: Path, problems: list[str]) -> None:
        target = _move(path, self.inbox / "error")
        reason = target.with_name(target.name + ".reason.txt")
        reason.write_text(f"{path.name}: {len(problems)} bad record(s); nothing was "
                          "accepted\n" + "".join(f"{p}\n" for p in problems))
        log.warning("%s refused: %s", path.name, "; ".join(problems[:5]))


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def _move(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` without overwriting an earlier file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    os.replace(path, target)
    return target
