"""The route version store on RabbitMQ: the store is the bus (PRODUCT.md §8).

Layout: one durable **stream** queue ``<prefix>.routes`` (``x-queue-type: stream``). Each
deployed version is one JSON message (``kind: version``: files, digest, who, when, note,
rollback_of, a unique id). Nothing else is needed: every instance reads the whole stream at
start and keeps consuming it, so it knows every version and hears of new ones at once.

Version numbers — race-free by construction: a version's number is its **ordinal among the
version records of the stream** (1 for the first, 2 for the second ...). The stream gives all
records one total order that every reader sees identically, so two deployers publishing at
the same instant get distinct, consecutive numbers without any lock: each learns its number by
reading its own record back (matched by id) after the publisher confirm. Numbers stay dense
even though the stream also carries other records (below); offsets would not be.

Catching up at start: a stream's ``queue.declare-ok`` reports no message count, so "have I read
everything that existed when I started?" is answered with a **sync marker**: ``start()``
publishes a small ``kind: sync`` record and reads from offset ``first`` until it reads that
marker back. Everything before it is history; every version after it is new and goes to the
watchers. (One marker per instance start; they are ignored by numbering.)

Reconnecting: when the connection drops, the shared
:class:`~esb.bus.broker.connection.AmqpLink` reconnects with back-off and the store resumes the
consumer at the last offset seen + 1 (``x-stream-offset`` as a number), so nothing is missed
or counted twice. The stream must keep its head (no ``x-max-age``/``x-max-length-bytes`` on
it): numbers are counted from the first record, and a truncated head is reported, not guessed.

Why pika's ``AsyncioConnection`` (not kombu in a thread): the store lives on the daemon's event
loop next to :class:`~esb.bus.broker.rabbitmq.RabbitBus`, on the same plumbing
(:class:`~esb.bus.broker.connection.AmqpLink`,
:class:`~esb.bus.broker.publisher.ConfirmedPublisher`); deliveries land on the loop where the
router is swapped, so a new version is installed without crossing threads, and there is no
polling ``drain_events`` loop adding latency to the 2 s switch-over.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pika
import structlog

from esb.bus.broker.connection import AmqpLink
from esb.bus.broker.publisher import ConfirmedPublisher
from esb.bus.broker.stream import StreamTail, SyncMarker, append, declare_stream
from esb.bus.broker.topology import Topology
from esb.bus.errors import BusError, BusUnavailable
from esb.bus.routing.routeset import digest_files
from esb.bus.routing.store import Dispatcher, LoadedVersions, RouteVersion, now

log = structlog.get_logger("esb.routes.store")

PREFETCH = 100
RECORD_FORMAT = 1


class RabbitRouteStore(LoadedVersions):
    """Route versions in the RabbitMQ stream ``<prefix>.routes``."""

    def __init__(self, url: str, prefix: str, *, heartbeat: int = 30,
                 name: str = "esb routes", timeout: float = 10.0) -> None:
        self.url = url
        self.queue = Topology(prefix).routes_stream
        self.name = name
        self._timeout = timeout
        self._link = AmqpLink(url, name=name, heartbeat=heartbeat, timeout=timeout,
                              on_connected=self._on_connected, on_lost=self._on_lost)
        self._publisher = ConfirmedPublisher(window=1)
        self._versions: list[RouteVersion] = []
        self._tail = StreamTail(self.queue, self._on_record, prefetch=PREFETCH)
        self._read_any = False  # a record was read: the stream's head is offset 0
        self._awaiting: dict[str, asyncio.Future[RouteVersion]] = {}
        self._marker: SyncMarker | None = None
        self._live = False  # the sync marker was read: later versions go to watchers
        self._dispatch = Dispatcher(self.queue)
        self._started = False
        self._broken: str | None = None

    # -- RouteStore ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def start(self) -> None:
        if self._started:
            return
        try:
            await self._link.start()
        except BaseException:
            await self._link.close()
            raise
        self._dispatch.start()
        try:
            await self._sync()
        except BaseException:
            await self.close()
            raise
        self._started = True
        log.info("route store ready", queue=self.queue, versions=len(self._versions))

    async def append(self, files: dict[str, str], deployed_by: str, note: str | None = None,
                     rollback_of: int | None = None) -> RouteVersion:
        if not self._started:
            raise BusUnavailable("the route store is not started")
        uid = uuid.uuid4().hex
        record = {"kind": "version", "format": RECORD_FORMAT, "id": uid,
                  "digest": digest_files(files), "deployed_at": now().isoformat(),
                  "deployed_by": deployed_by, "note": note, "rollback_of": rollback_of,
                  "files": dict(sorted(files.items()))}
        fut: asyncio.Future[RouteVersion] = asyncio.get_running_loop().create_future()
        self._awaiting[uid] = fut
        try:
            await self._publish("version", uid, orjson.dumps(record))
            try:
                return await asyncio.wait_for(asyncio.shield(fut), self._timeout)
            except TimeoutError:
                raise BusUnavailable(
                    f"route version stored in {self.queue} but not read back within "
                    f"{self._timeout:g}s; `esb routes history` will show it") from None
        finally:
            self._awaiting.pop(uid, None)

    async def close(self) -> None:
        self._started = False
        await self._link.close()
        self._fail(BusUnavailable("the route store was closed"))
        await self._dispatch.close()

    # -- connection ---------------------------------------------------------------------------

    async def _on_connected(self, link: AmqpLink) -> None:
        """Declare the stream, open the confirm channel and (re)start reading after the last
        offset seen: on the first connect and after every reconnect."""
        sub = await link.channel(recover=True)
        await declare_stream(link, sub, self.queue)
        await self._publisher.open(link, recover=True)
        offset = await self._tail.follow(link, sub, "first")
        if link.connects:
            log.info("route store reconnected", queue=self.queue, resume_at=offset)

    def _on_lost(self, reason: BaseException) -> None:
        self._fail(BusUnavailable(f"route store connection lost: {reason}"), awaiting=False)

    def _fail(self, exc: Exception, awaiting: bool = True) -> None:
        """Fail the pending confirm and marker; also pending appends when closing."""
        self._publisher.fail_all(exc)
        if self._marker is not None:
            self._marker.fail(exc)
        if awaiting:
            for fut in self._awaiting.values():
                if not fut.done():
                    fut.set_exception(exc)

    # -- publishing ---------------------------------------------------------------------------

    async def _publish(self, kind: str, uid: str, body: bytes) -> None:
        """Publish one record and wait for the broker's confirm (one publish at a time)."""
        if not self.connected:
            raise BusUnavailable("the route store is not connected to the bus")
        props = pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                     message_id=uid, type=f"esb.routes.{kind}")
        await append(self._publisher, self.queue, body, props,
                     timeout=self._timeout, what="the route version")

    async def _sync(self) -> None:
        """Read the stream up to a marker published now: afterwards, history is complete."""
        self._marker = marker = SyncMarker(self.name)
        try:
            await self._publish("sync", marker.id, marker.body)
            await marker.wait(self.queue, self._timeout)
        finally:
            self._marker = None

    # -- reading ------------------------------------------------------------------------------

    def _on_record(self, offset: int | None, props: Any, body: bytes) -> None:
        if offset is None or self._broken:
            return
        if offset > 0 and not self._read_any:
            self._broken = (f"{self.queue} has lost its head (first offset {offset}): version "
                            "numbers cannot be derived; remove retention limits from it")
            log.error("route store unusable", reason=self._broken)
            self._fail(BusError(self._broken))
            return
        self._read_any = True
        try:
            raw = orjson.loads(body)
            kind = raw.get("kind") if isinstance(raw, dict) else None
        except orjson.JSONDecodeError:
            kind = None
        if kind == "sync":
            if self._marker is not None and self._marker.read(body):
                self._live = True
            return
        if kind != "version":
            log.warning("route store: ignoring a foreign record", queue=self.queue,
                        offset=offset)
            return
        try:
            version = RouteVersion.from_dict(raw, version=len(self._versions) + 1)
            if version.digest != digest_files(version.files):
                raise ValueError("digest does not match the files")
        except ValueError as exc:
            log.error("route store: ignoring a bad version record", queue=self.queue,
                      offset=offset, error=str(exc))
            return
        self._versions.append(version)
        fut = self._awaiting.get(str(raw.get("id")))
        if fut is not None and not fut.done():
            fut.set_result(version)
        if self._live:
            self._dispatch.put(version)
