"""Idempotency keys shared between instances through the bus itself, with no race window.

The stream ``<prefix>.idempotency`` (``x-max-age`` = the window) is a log every instance
appends to and reads whole, in the one order the stream gives every reader. Its records:

* ``claim {key, nonce, by, at, fp}`` — an instance wants to take a key;
* ``done {key, nonce, id, destinations, fp}`` — the key was taken. It is committed in the same
  AMQP transaction as the envelope's copies (:meth:`~esb.bus.broker.base.Bus.publish_atomically`),
  so a crash of the instance leaves both or neither (a broker node failing during the commit
  may keep the record alone: the ingress then publishes the copies again, see
  :meth:`~esb.bus.runtime.ingress.Ingress._secure`). On quorum queues there is no
  transaction: the record is appended once every copy is confirmed, never before;
* ``abandon {key, nonce}`` — the claimant failed before publishing (sent on a best-effort
  basis; a claim without it lapses after ``claim_ttl``).

**Taking a key** (:meth:`IdempotencyLog.claim`): append a claim (confirmed), then wait until
this instance's tail reads that very claim back. What precedes it in the stream decides:
a ``done`` for the key → a duplicate (answered with the original id); an earlier live claim
of another instance (not done, not abandoned, younger than ``claim_ttl`` by the two claims'
own timestamps) → busy (the caller waits for its ``done`` a moment, then answers 409);
otherwise this claim won. Every instance judges every claim by the same prefix of the same
log, so of two instances claiming a key in the same instant exactly one wins — the one whose
claim the broker appended first. No lock service, no owner per key, nothing but the stream.

The costs: one confirmed append and one read-back per keyed message (a few milliseconds),
and clocks within ``claim_ttl`` of each other (NTP) for a dead claimant's claim to lapse.
A claimant that dies after its claim and before the commit published nothing; its claim
blocks the key (409) until ``claim_ttl`` passes, then a retry takes it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import pika
import structlog

from esb.bus.broker.connection import AmqpLink
from esb.bus.broker.publisher import ConfirmedPublisher
from esb.bus.broker.stream import StreamTail, declare_stream
from esb.bus.broker.topology import Topology
from esb.bus.errors import BusUnavailable

log = structlog.get_logger("esb.idempotency")

Record = Callable[[str, dict[str, Any]], None]

#: How long a claim waits to be read back before the sender is told to retry.
READ_BACK = 5.0


@dataclass(frozen=True, slots=True)
class Claim:
    nonce: str
    by: str
    at: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the log says of a claim: ``won`` (publish it), ``done`` (a duplicate: ``record``
    is the original's) or ``busy`` (another instance holds it now)."""

    kind: str
    nonce: str
    record: dict[str, Any] | None = None


#: Abandon records kept for a reconnect at most (past it, those keys wait for claim_ttl).
MAX_UNSENT_ABANDONS = 10_000


class IdempotencyLog:
    def __init__(self, url: str, prefix: str, instance: str, window: float,
                 on_record: Record, *, claim_ttl: float = 30.0,
                 max_keys: int = 100_000, confirm_timeout: float = 5.0) -> None:
        """``confirm_timeout``: the bus's, the longest a claim waits for its confirm (the
        sender of a keyed request is then told to retry, as for any other publish)."""
        self.queue = Topology(prefix).idempotency_stream
        self.instance = instance
        self.window = window
        self.claim_ttl = claim_ttl
        self.max_keys = max_keys
        self.confirm_timeout = confirm_timeout
        self.on_record = on_record
        self._link = AmqpLink(url, name=f"esb idempotency {instance}",
                              on_connected=self._on_connected)
        self._publisher = ConfirmedPublisher()
        self._ids = itertools.count()
        self._boot = f"{instance}:{time.time_ns()}"
        self._tail = StreamTail(self.queue, self._on_record, prefetch=1000)
        #: The first live claim of each key, as the log orders them.
        self._claims: dict[str, Claim] = {}
        #: Keys taken (``done``), oldest first: (local arrival time, record).
        self._done: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._verdicts: dict[str, asyncio.Future[Verdict]] = {}
        self._done_waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        #: Abandon records that could not be appended (the link was lost with the claim):
        #: sent again once the link is back, so the key is free again long before claim_ttl.
        self._unsent: list[bytes] = []

    @property
    def ready(self) -> bool:
        """Claims can be taken now: the link is connected and not suspect, and the channel
        claims are appended on is open (the tail follows the stream before it opens)."""
        return self._link.healthy and self._publisher.ready

    async def start(self) -> None:
        await self._link.start()

    async def close(self) -> None:
        await self._link.close()

    async def _on_connected(self, link: AmqpLink) -> None:
        # Reconnecting rebuilds a lost consumer; the tail resumes after the last record read.
        ch = await link.channel(recover=True)
        await declare_stream(link, ch, self.queue, {
            "x-max-age": f"{max(1, int(self.window))}s",
            "x-stream-max-segment-size-bytes": 8 * 1024 * 1024})
        # On first start, from the window's beginning.
        await self._tail.follow(link, ch, datetime.now() - timedelta(seconds=self.window))
        await self._publisher.open(link)
        self._flush_unsent()

    def _flush_unsent(self) -> None:
        unsent, self._unsent = self._unsent, []
        for body in unsent:
            self._send_abandon(body)

    # -- reading the log -----------------------------------------------------------------------

    def _on_record(self, offset: int | None, props: Any, body: bytes) -> None:
        try:
            self._apply(orjson.loads(body))
        except Exception as exc:  # a bad record must not stop the tail
            log.warning("bad idempotency record skipped", error=str(exc))

    def _apply(self, record: dict[str, Any]) -> None:
        key = record["key"]
        kind = record.get("kind")
        if kind == "claim":
            verdict = self._judge(key, record)
            waiting = self._verdicts.pop(record["nonce"], None)
            if waiting is not None and not waiting.done():
                waiting.set_result(verdict)
        elif kind == "done":
            self._claims.pop(key, None)
            self._remember(key, record)
            if record.get("by") != self.instance:
                self.on_record(key, record)
            for fut in self._done_waiters.pop(key, []):
                if not fut.done():
                    fut.set_result(record)
        elif kind == "abandon":
            live = self._claims.get(key)
            if live is not None and live.nonce == record.get("nonce"):
                del self._claims[key]

    def _judge(self, key: str, claim: dict[str, Any]) -> Verdict:
        """The verdict on ``claim``, from the records before it (the same on every reader)."""
        nonce = claim["nonce"]
        done = self._done.get(key)
        if done is not None:
            return Verdict("done", nonce, done[1])
        live = self._claims.get(key)
        if live is not None and live.nonce != nonce and claim["at"] - live.at < self.claim_ttl:
            return Verdict("busy", nonce)
        self._claims[key] = Claim(nonce, claim.get("by", ""), claim["at"])
        if len(self._claims) > self.max_keys:  # lapsed claims of instances that died
            horizon = claim["at"] - self.claim_ttl
            for k in [k for k, c in self._claims.items() if c.at < horizon]:
                del self._claims[k]
        return Verdict("won", nonce)

    def _remember(self, key: str, record: dict[str, Any]) -> None:
        now = time.monotonic()
        done = self._done
        done[key] = (now, record)
        done.move_to_end(key)
        while done and (len(done) > self.max_keys
                        or now - next(iter(done.values()))[0] > self.window):
            done.popitem(last=False)

    # -- taking a key --------------------------------------------------------------------------

    async def claim(self, key: str, fingerprint: str) -> Verdict:
        """Append a claim for ``key`` and return the log's verdict on it. Raises
        :class:`~esb.bus.errors.BusUnavailable` when the log cannot be written or read."""
        if not self._publisher.ready:
            raise BusUnavailable("the idempotency log is not connected")
        if not self._link.healthy:
            raise BusUnavailable("the idempotency log's link is not answering (reconnecting)")
        nonce = f"{self._boot}:{next(self._ids)}"
        verdict: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._verdicts[nonce] = verdict
        body = orjson.dumps({"kind": "claim", "key": key, "nonce": nonce, "by": self.instance,
                             "at": time.time(), "fp": fingerprint})
        try:
            await self._send(body)
            return await asyncio.wait_for(verdict, READ_BACK)
        except TimeoutError:
            self.abandon(key, nonce)
            raise BusUnavailable("the idempotency log did not read the claim back in time; "
                                 "retry") from None
        except BaseException:
            self.abandon(key, nonce)
            raise
        finally:
            self._verdicts.pop(nonce, None)

    def fail_pending(self, reason: str) -> None:
        """Fail every claim still waiting, for its confirm or to be read back (a stop that
        cannot wait longer for a silent broker): their senders are answered "retry later",
        never left hanging."""
        exc = BusUnavailable(reason)
        self._publisher.fail_all(exc)
        for verdict in list(self._verdicts.values()):
            if not verdict.done():
                verdict.set_exception(exc)
                # A claim whose confirm failed first never awaits its verdict: marked as
                # retrieved, so asyncio does not log it as an exception nobody saw.
                verdict.exception()

    def done_record(self, key: str, nonce: str, fingerprint: str, envelope_id: str,
                    destinations: tuple[str, ...]) -> tuple[str, bytes]:
        """The ``done`` record of a won claim, as (queue, body) for the transaction that
        publishes the envelope."""
        return self.queue, orjson.dumps({
            "kind": "done", "key": key, "nonce": nonce, "by": self.instance,
            "id": envelope_id, "destinations": list(destinations), "fp": fingerprint})

    def abandon(self, key: str, nonce: str) -> None:
        """Say (best effort, not waited for) that the claim ``nonce`` published nothing."""
        self._send_abandon(orjson.dumps({"kind": "abandon", "key": key, "nonce": nonce,
                                         "by": self.instance}))

    def _send_abandon(self, body: bytes) -> None:
        async def send() -> None:
            try:
                await self._send(body)
            except Exception:
                # The claim may have reached the stream though its confirm did not come back
                # (a node lost): without its abandon the key stays blocked for claim_ttl.
                if len(self._unsent) < MAX_UNSENT_ABANDONS and not self._link.closing:
                    self._unsent.append(body)
                    if self._publisher.ready:  # the link came back while this one failed
                        await asyncio.sleep(1)
                        self._flush_unsent()

        asyncio.get_running_loop().create_task(send())

    async def wait_done(self, key: str, timeout: float) -> dict[str, Any] | None:
        """The ``done`` record of ``key`` once it arrives (``None`` after ``timeout``)."""
        known = self._done.get(key)
        if known is not None:
            return known[1]
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._done_waiters.setdefault(key, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._done_waiters.get(key)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._done_waiters[key]

    async def _send(self, body: bytes) -> None:
        props = pika.BasicProperties(delivery_mode=2,
                                     message_id=f"{self._boot}:m{next(self._ids)}")
        await self._publisher.publish("", self.queue, body, props,
                                      timeout=self.confirm_timeout)
