"""Route deployment at run time: validate, store a version, switch every instance to it.

The :class:`RouteDeployer` keeps :class:`~esb.bus.runtime.ingress.RouterHolder` in step with
the route store. A switch is one attribute assignment of a fully compiled, immutable
:class:`~esb.bus.routing.router.Router`, and the ingress reads the holder once per envelope,
so each envelope is routed wholly by one version (recorded in ``esbrouteversion``) — never by a
half-applied set.

* Deploy: compile first (a route set that does not compile is refused whole and nothing is
  stored), append to the store, then wait until this instance runs it.
* Every instance watches the store and installs each new version as it appears; a version
  that does not compile *here* (say, this instance's configuration lacks a destination) is
  logged and skipped, and the running set stays.
* A restarted instance runs the store's latest version, not the files it was started with;
  the files only seed an empty store (version 1, deployed by ``initial``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from esb.bus.errors import ConfigError, EsbError
from esb.bus.routing.from_config import Compile
from esb.bus.routing.router import Router
from esb.bus.routing.routeset import digest_files
from esb.bus.routing.store import RouteStore, RouteVersion

if TYPE_CHECKING:
    from esb.bus.runtime.ingress import RouterHolder

log = structlog.get_logger("esb.routes.deploy")

SWITCH_TIMEOUT = 2.0


class RollbackError(EsbError):
    """A rollback that cannot be done (nothing to roll back to, or already running it)."""


class Unchanged(EsbError):
    """A deploy of the route files the latest version has already: nothing is stored."""

    def __init__(self, latest: RouteVersion) -> None:
        super().__init__(f"version {latest.version} has these route files already")
        self.latest = latest


def changed_files(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    """The file names ``new`` adds, removes and modifies relative to ``old`` (empty lists
    left out)."""
    out = {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
           "modified": sorted(n for n in set(old) & set(new) if old[n] != new[n])}
    return {k: v for k, v in out.items() if v}


class RouteDeployer:
    """Keeps ``holder.current`` on the store's latest version; deploys and rolls back."""

    def __init__(self, store: RouteStore, holder: RouterHolder, compile: Compile,
                 instance: str, *, on_install: Callable[[Router], None] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.store = store
        self.holder = holder
        self.compile = compile
        self.instance = instance
        self.on_install = on_install
        #: Told when this instance installs a version or refuses one (presence tells all).
        self.on_change = on_change
        #: The newest stored version this instance could not compile, and why.
        self.refused: dict[str, Any] | None = None
        #: The stored version this instance routes by (None before :meth:`start`).
        self.running: RouteVersion | None = None
        self._changed = asyncio.Event()
        #: Routers compiled while validating a deploy, reused when the version arrives.
        self._prepared: dict[str, Router] = {}

    async def start(self, initial_files: dict[str, str], files_path: str = "routes/") -> None:
        """Open the store, install its latest version (seeding it with ``initial_files`` when
        empty), and follow every version appended from now on. When the store has a version
        and ``initial_files`` (read from ``files_path``) differ from it, the stored version
        runs and a warning names the difference and the command that deploys the files."""
        self.store.watch(self._on_version)
        await self.store.start()
        latest = await self.store.latest()
        if latest is None:  # never seed the store with a set that won't compile
            await asyncio.to_thread(self._prepare, initial_files)
            latest = await self.store.append(initial_files, deployed_by="initial",
                                             note=f"route files {self.instance} started with")
            log.info("route store seeded", version=latest.version, digest=latest.digest[:12])
        elif latest.digest != digest_files(initial_files):
            log.warning("the route files differ from the stored version, which runs; deploy "
                        "the files to run them", version=latest.version,
                        files=files_path, changed=changed_files(latest.files, initial_files),
                        deploy=f"esb routes deploy {files_path}")
        if self.running is None or latest.version > self.running.version:
            await self._install_newest(latest)

    async def close(self) -> None:
        await self.store.close()

    async def deploy(self, files: dict[str, str], by: str, note: str | None = None, *,
                     force: bool = False) -> RouteVersion:
        """Validate ``files`` (ConfigError with every problem: nothing is stored), store them as
        a new version and wait (up to :data:`SWITCH_TIMEOUT`) until this instance runs it.
        Files the latest version has already are :class:`Unchanged` unless ``force``."""
        latest = await self.store.latest()
        if not force and latest is not None and latest.digest == digest_files(files):
            raise Unchanged(latest)
        await asyncio.to_thread(self._prepare, files)
        version = await self.store.append(files, deployed_by=by, note=note)
        log.info("route set deployed", version=version.version, digest=version.digest[:12],
                 by=by, note=note)
        await self.wait_running(version.version)
        return version

    async def rollback(self, version: int | None, by: str, *,
                       force: bool = False) -> RouteVersion:
        """Deploy again the files of ``version`` (default: the newest earlier version whose
        files differ from the latest's) as a new version with ``rollback_of`` set.
        UnknownVersion / RollbackError / ConfigError."""
        history = await self.store.history()
        if not history:
            raise RollbackError("no route version is stored yet")
        latest = history[-1]
        if version is None:
            target = next((v for v in reversed(history[:-1]) if v.digest != latest.digest),
                          None)
            if target is None:
                raise RollbackError(
                    f"version {latest.version} is the only version" if len(history) < 2 else
                    f"every stored version has the route files of version {latest.version}: "
                    "nothing to roll back to")
        else:
            target = await self.store.get(version)
        if target.version == latest.version:
            raise RollbackError(f"version {target.version} is already the latest version")
        if target.digest == latest.digest and not force:
            raise RollbackError(f"version {target.version} has the route files of the latest "
                                f"version {latest.version}: nothing would change (--force "
                                "stores them again anyway)")
        await asyncio.to_thread(self._prepare, target.files)  # the config may have changed
        new = await self.store.append(target.files, deployed_by=by,
                                      note=f"rollback to version {target.version}",
                                      rollback_of=target.version)
        log.info("route set rolled back", version=new.version, to=target.version, by=by)
        await self.wait_running(new.version)
        return new

    async def wait_running(self, version: int, timeout: float = SWITCH_TIMEOUT) -> bool:
        """True once this instance runs ``version`` or a later one, False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.running is None or self.running.version < version:
            self._changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("route version stored but not running here yet", version=version,
                            running=self.running.version if self.running else None)
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    def status(self) -> dict[str, Any]:
        """The version this instance runs: number, digest, who deployed it and when."""
        v = self.running
        router = self.holder.current
        if v is None:
            return {"version": router.version, "digest": router.digest, "deployed_at": None,
                    "deployed_by": None, "note": None, "rollback_of": None,
                    "instance": self.instance, "routes": len(router.routes)}
        return {**v.summary(), "instance": self.instance, "routes": len(router.routes)}

    # -- internals ----------------------------------------------------------------------------

    def _prepare(self, files: dict[str, str]) -> None:
        router = self.compile(files, 0)
        if len(self._prepared) > 8:
            self._prepared.clear()
        self._prepared[router.digest] = router

    async def _on_version(self, version: RouteVersion) -> None:
        if self.running is not None and version.version <= self.running.version:
            return
        try:
            await self._install(version)
        except ConfigError as exc:
            log.error("route version does not compile on this instance; the running set stays",
                      version=version.version, problems=exc.problems,
                      running=self.running.version if self.running else None)
            self.refused = {"version": version.version, "problems": exc.problems[:5]}
            if self.on_change is not None:
                self.on_change()

    async def _install_newest(self, latest: RouteVersion) -> None:
        """Install ``latest``, or the newest earlier version that compiles here."""
        candidate: RouteVersion | None = latest
        while candidate is not None:
            try:
                await self._install(candidate)
                return
            except ConfigError as exc:
                log.error("stored route version does not compile on this instance",
                          version=candidate.version, problems=exc.problems)
                newer_runs = self.running is not None and \
                    self.running.version >= candidate.version
                if not newer_runs and (self.refused is None
                                       or candidate.version > self.refused["version"]):
                    self.refused = {"version": candidate.version,
                                    "problems": exc.problems[:5]}
            earlier = candidate.version - 1
            candidate = await self.store.get(earlier) if earlier >= 1 else None
        log.error("no stored route version compiles here; running the local route files",
                  version=self.holder.current.version)

    async def _install(self, version: RouteVersion) -> None:
        router = self._prepared.pop(version.digest, None)
        if router is None:
            # Compiling a large set takes seconds (10,000 routes): in a thread, so the event
            # loop keeps taking and delivering messages by the running set meanwhile.
            router = await asyncio.to_thread(self.compile, version.files, version.version)
        else:
            router.version = version.version  # compiled for validation; not shared yet
        if self.running is not None and version.version <= self.running.version:
            return  # a newer version got in while this one compiled
        self.holder.current = router  # the switch: one assignment
        self.running = version
        if self.refused is not None and self.refused["version"] <= version.version:
            self.refused = None
        self._changed.set()
        if self.on_install is not None:
            self.on_install(router)
        if self.on_change is not None:
            self.on_change()
        log.info("route version installed", version=version.version,
                 digest=version.digest[:12], routes=len(router.routes),
                 deployed_by=version.deployed_by)
