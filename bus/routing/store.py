"""The route version store: every deployed route set, numbered, kept as its documents.

A version is the route files themselves (file name → text) plus who deployed it and when, so
versions can be diffed and rolled back as documents and recompiled wherever they run. Versions
are only ever appended (a rollback is a new version carrying an older one's files); the number
is monotonic and 1-based, assigned by the store so that concurrent deployers never share one.

Two implementations, chosen by the bus URL (no second database, PRODUCT.md §8):

* :class:`~esb.bus.routing.store_rabbitmq.RabbitRouteStore` — a RabbitMQ stream
  ``<prefix>.routes``; every instance on the broker sees every version.
* :class:`~esb.bus.routing.store_embedded.FileRouteStore` — a JSON-lines file in the embedded
  bus's state folder, for the single-process embedded bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import structlog

from esb.bus.tasks import cancel_and_wait

log = structlog.get_logger("esb.routes.store")

Watcher = Callable[["RouteVersion"], Awaitable[None]]


class UnknownVersion(KeyError):
    """No route version has this number."""

    def __init__(self, version: int, latest: int | None) -> None:
        super().__init__(version)
        self.version = version
        self.latest = latest

    def __str__(self) -> str:
        known = f"versions are 1..{self.latest}" if self.latest else "no version is stored yet"
        return f"no route version {self.version} ({known})"


@dataclass(frozen=True)
class RouteVersion:
    """One deployed route set."""

    version: int  # monotonic, 1-based
    digest: str  # digest_files(files)
    files: dict[str, str] = field(repr=False)  # file name -> text
    deployed_at: datetime
    deployed_by: str
    note: str | None = None
    rollback_of: int | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready metadata without the file texts (file names only)."""
        return {"version": self.version, "digest": self.digest,
                "deployed_at": self.deployed_at.astimezone(UTC).isoformat(),
                "deployed_by": self.deployed_by, "note": self.note,
                "rollback_of": self.rollback_of, "files": sorted(self.files)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the file texts."""
        return {**self.summary(), "files": dict(sorted(self.files.items()))}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], version: int | None = None) -> RouteVersion:
        """Inverse of :meth:`to_dict`; ``version`` overrides the stored number (the RabbitMQ
        store derives it from the record's position). Raises ValueError on a bad record."""
        try:
            files = raw["files"]
            if not isinstance(files, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
                raise ValueError("files must map names to texts")
            at = datetime.fromisoformat(raw["deployed_at"])
            rollback_of = raw.get("rollback_of")
            return cls(version=int(version if version is not None else raw["version"]),
                       digest=str(raw["digest"]), files=dict(files),
                       deployed_at=at if at.tzinfo else at.replace(tzinfo=UTC),
                       deployed_by=str(raw["deployed_by"]), note=raw.get("note"),
                       rollback_of=int(rollback_of) if rollback_of is not None else None)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a route version record: {exc!r}") from exc


@runtime_checkable
class RouteStore(Protocol):
    """Where route versions live. Every method is safe to call from the event loop."""

    async def start(self) -> None:
        """Open the store and load the existing history (idempotent)."""

    async def latest(self) -> RouteVersion | None:
        """The newest version, or None while the store is empty."""

    async def history(self) -> list[RouteVersion]:
        """Every version, oldest first."""

    async def get(self, version: int) -> RouteVersion:
        """One version; :class:`UnknownVersion` when there is no such number."""

    async def append(self, files: dict[str, str], deployed_by: str, note: str | None = None,
                     rollback_of: int | None = None) -> RouteVersion:
        """Store ``files`` as the next version and return it (with its number). Does not
        validate: callers compile first."""

    def watch(self, callback: Watcher) -> None:
        """Call ``callback`` for every version appended after :meth:`start` returned, by this
        or any other instance sharing the store, in version order, one at a time."""

    async def close(self) -> None:
        """Release connections and files; watchers are no longer called."""


class LoadedVersions:
    """``latest``, ``history`` and ``get`` of a :class:`RouteStore` answered from the versions
    it has loaded (``_versions``, oldest first), and ``watch`` by its :class:`Dispatcher`
    (``_dispatch``), as both stores do."""

    _versions: list[RouteVersion]
    _dispatch: Dispatcher

    def watch(self, callback: Watcher) -> None:
        self._dispatch.add(callback)

    async def latest(self) -> RouteVersion | None:
        return self._versions[-1] if self._versions else None

    async def history(self) -> list[RouteVersion]:
        return list(self._versions)

    async def get(self, version: int) -> RouteVersion:
        if 1 <= version <= len(self._versions):
            found = self._versions[version - 1]
            if found.version == version:
                return found
        for v in self._versions:
            if v.version == version:
                return v
        raise UnknownVersion(version, self._versions[-1].version if self._versions else None)


def now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    """Calls watchers for each queued version, in order, one at a time, on the event loop.

    A failing watcher is logged and does not stop the others or later versions."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._watchers: list[Watcher] = []
        self._queue: asyncio.Queue[RouteVersion] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def add(self, callback: Watcher) -> None:
        self._watchers.append(callback)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def put(self, version: RouteVersion) -> None:
        self._queue.put_nowait(version)

    async def _run(self) -> None:
        while True:
            version = await self._queue.get()
            for callback in list(self._watchers):
                try:
                    await callback(version)
                except Exception as exc:
                    log.error("route store watcher failed", store=self._name,
                              version=version.version, error=repr(exc))

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
