"""The route version store of the embedded bus: ``<state_dir>/routes/history.jsonl``.

One JSON object per line, one line per version, only ever appended. Each append is a single
``write`` of a whole line on an ``O_APPEND`` descriptor followed by ``fsync``, under an
exclusive ``flock`` (so two processes sharing a state folder still number versions without
gaps or duplicates). A crash mid-write can leave a torn last line: readers ignore a last line
without its newline, and the next append cuts it off before writing.

Watchers are in-process: every store object open on the same file in this process hears of
every append made through any of them (the embedded bus is single-process by design).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import weakref
from pathlib import Path
from typing import Any

import orjson
import structlog

from esb.bus.routing.routeset import digest_files
from esb.bus.routing.store import Dispatcher, LoadedVersions, RouteVersion, now

log = structlog.get_logger("esb.routes.store")

#: Open stores per history file, so an append through one reaches the watchers of all.
_OPEN: dict[Path, weakref.WeakSet[FileRouteStore]] = {}


class FileRouteStore(LoadedVersions):
    """Route versions in a JSON-lines file under the state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "routes" / "history.jsonl"
        self._versions: list[RouteVersion] = []
        self._dispatch = Dispatcher(str(self.path))
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._started:
            return
        self._versions = await asyncio.to_thread(self._load)
        self._started = True
        _OPEN.setdefault(self.path.resolve(), weakref.WeakSet()).add(self)
        self._dispatch.start()

    async def append(self, files: dict[str, str], deployed_by: str, note: str | None = None,
                     rollback_of: int | None = None) -> RouteVersion:
        if not self._started:
            await self.start()
        record = {"digest": digest_files(files), "deployed_at": now().isoformat(),
                  "deployed_by": deployed_by, "note": note, "rollback_of": rollback_of,
                  "files": dict(sorted(files.items()))}
        async with self._lock:
            version = await asyncio.to_thread(self._append, record)
        for store in list(_OPEN.get(self.path.resolve(), ())):
            store._heard(version)
        return version

    async def close(self) -> None:
        self._started = False
        peers = _OPEN.get(self.path.resolve())
        if peers is not None:
            peers.discard(self)
        await self._dispatch.close()

    # -- internals ----------------------------------------------------------------------------

    def _heard(self, version: RouteVersion) -> None:
        """A version was appended (by this object or a peer on the same file)."""
        if not self._started:
            return
        known = self._versions[-1].version if self._versions else 0
        if version.version <= known:
            return
        new = [version]
        if version.version != known + 1:  # another process appended in between: catch up
            new = [v for v in self._load() if v.version > known]
        for v in new:
            self._versions.append(v)
            self._dispatch.put(v)

    def _load(self) -> list[RouteVersion]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return _parse(raw, self.path)

    def _append(self, record: dict[str, Any]) -> RouteVersion:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with open(fd, "rb", closefd=False) as f:  # a new fd reads from the start
                raw = f.read()
            complete = raw.rfind(b"\n") + 1
            if complete < len(raw):  # a torn last line from a crash: cut it off
                log.warning("route history: dropping a torn last line", path=str(self.path),
                            bytes=len(raw) - complete)
                os.ftruncate(fd, complete)
                raw = raw[:complete]
            existing = _parse(raw, self.path)
            number = existing[-1].version + 1 if existing else 1
            line = orjson.dumps({"version": number, **record}) + b"\n"
            written = os.write(fd, line)
            if written != len(line):
                os.ftruncate(fd, complete)
                raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock
        if created:
            _fsync_dir(self.path.parent)
        return RouteVersion.from_dict({"version": number, **record})


def _parse(raw: bytes, path: Path) -> list[RouteVersion]:
    versions: list[RouteVersion] = []
    lines = raw.split(b"\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if i == len(lines):
            # No newline after it: a torn write (the next append cuts it off), never a version.
            log.warning("route history: ignoring a torn last line", path=str(path), line=i)
            continue
        try:
            v = RouteVersion.from_dict(orjson.loads(line))
        except (orjson.JSONDecodeError, ValueError) as exc:
            log.error("route history: skipping an unreadable line", path=str(path),
                      line=i, error=str(exc))
            continue
        if versions and v.version <= versions[-1].version:
            log.error("route history: skipping an out-of-order version", path=str(path),
                      line=i, version=v.version)
            continue
        versions.append(v)
    return versions


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
