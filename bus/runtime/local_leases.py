"""The :class:`~esb.bus.runtime.singleton.Leases` of the embedded bus: one host, so a lease is
an exclusive ``flock`` on ``<state_dir>/leases/<source>.lock`` (the operating system's: it goes
with the process, so the workers of ``esb run --workers N`` hand it over when one dies) and a
state document is ``<state_dir>/sources/<source>.json`` (written atomically)."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

import orjson

from esb.bus.atomicfile import write_atomically
from esb.bus.errors import ConfigError


class FileLease:
    def __init__(self, path: Path, retry: float = 1.0) -> None:
        self.path = path
        self.retry = retry
        self._fd: int | None = None
        self._released = asyncio.Event()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _try(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self) -> None:
        while not self.held and not self._try():
            await asyncio.sleep(self.retry)
        self._released.clear()

    async def lost(self) -> None:
        # A lock of this process is lost only by giving it up.
        await self._released.wait()

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._released.set()


class FileState:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> dict[str, Any] | None:
        try:
            raw = await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return None
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError([f"source state {self.path} is unreadable: {exc}; fix or delete "
                               "it (deleting starts over)"]) from exc
        if not isinstance(document, dict):
            raise ConfigError([f"source state {self.path} is not a JSON object"])
        return document

    async def save(self, document: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write, orjson.dumps(document, option=orjson.OPT_INDENT_2))

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, data, mode=0o600)


class LocalLeases:
    def __init__(self, state_dir: Path, retry: float = 1.0) -> None:
        self.state_dir = state_dir
        self.retry = retry
        self._leases: dict[str, FileLease] = {}

    def lease(self, source: str) -> FileLease:
        lease = self._leases.get(source)
        if lease is None:
            lease = self._leases[source] = FileLease(
                self.state_dir / "leases" / f"{source}.lock", self.retry)
        return lease

    def state(self, source: str) -> FileState:
        return FileState(self.state_dir / "sources" / f"{source}.json")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for lease in self._leases.values():
            await lease.release()
