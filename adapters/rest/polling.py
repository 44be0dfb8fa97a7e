"""rest polling inbound: GET an API on a schedule; each item of the answer → one envelope.

* **Cursor.** ``kind: field`` sends the value of ``from`` in the last item of the previous page
  as the ``param`` query parameter (a watermark: the API lists items in ascending order of that
  field). ``kind: page`` sends a page number, advanced after a page of ``page_size`` items.
  A full page is followed at once (up to ``max_pages`` per tick), so a backlog drains quickly.
* **At least once, no duplicates.** The cursor advances only after every item of the page was
  accepted by the bus, and is then saved in the source's state (``ctx.state``: on the broker
  with RabbitMQ, so it survives restarts and moves with the lease to another host; a file
  beside the embedded bus). APIs that answer
  ``since=X`` inclusively send the items *at* the watermark again: the state keeps the keys of
  the items at the watermark and skips them. Items accepted before a failed one in the same page
  are remembered in memory and skipped when the page is polled again; after a move to another
  instance they are sent again with the same idempotency key, which the runtime answers as a
  duplicate (and destinations de-duplicate on).
* **Keys.** With ``id`` set, an item's key is its id — or ``<id>@<cursor value>`` when the
  cursor is another field (``updatedAt``), so a later change of the same item is a new event
  and not a duplicate. Without ``id``, the key is a hash of the item's JSON. The key is the
  envelope's id and idempotency key; the item id is its ``subject``.

* **One poller across the fleet.** The rest adapter declares ``inbound_mode: one-instance``:
  the runtime starts the poller only on the instance holding the source's lease (workers of
  ``esb run --workers N`` and daemons on other hosts alike) and moves it when that instance
  dies; HTTP endpoints of the same source are served everywhere.

* **Allow-list.** ``url`` and an OAuth 2.0 ``token_url`` must be on the outbound allow-list
  (``http.allowed_hosts``, handed in as ``ctx.allowed_hosts``) when one is configured; a host
  that is not is a :class:`~esb.bus.errors.ConfigError` when the source is built.

Failures never stop the loop: an unreachable API, a non-2xx answer or an unexpected shape is
logged and polled again next tick; a bus that cannot take an item ends the tick with the cursor
where it was.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import jmespath
import orjson
import structlog
from jmespath.exceptions import JMESPathError

from esb.adapters.auth.outbound import build_outbound_auth, redact_url, scrub, secrets_of
from esb.adapters.auth.settings import OAuth2Outbound
from esb.adapters.http import check_host
from esb.adapters.rest.settings import PollSettings
from esb.adapters.spec import InboundContext
from esb.bus.envelope import Envelope
from esb.bus.errors import BusError, ConfigError, DeliveryError
from esb.bus.payload import JsonTooDeep, loads_json, scalar
from esb.bus.tasks import cancel_and_wait

log = structlog.get_logger("esb.rest.poll")


class PollFailed(Exception):
    """This tick cannot go on (the API failed or answered something unexpected)."""


def _compile(expression: str | None, setting: str) -> Any:
    if expression is None:
        return None
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ConfigError([f"poll.{setting}: {expression!r} is not a path: {exc}"]) from exc


class Poller:
    """One polling loop for one source; ``poll_once`` is one tick (tests call it directly)."""

    def __init__(self, settings: PollSettings, ctx: InboundContext,
                 default_type: str | None = None) -> None:
        self.settings = settings
        self.ctx = ctx
        self.type = settings.type or default_type or f"{ctx.name}.polled"
        self._items = _compile(settings.items, "items")
        self._id = _compile(settings.id, "id")
        cursor = settings.cursor
        self._from = _compile(cursor.from_ if cursor else None, "cursor.from")
        if cursor is not None and cursor.kind == "page" and cursor.page_size is None:
            raise ConfigError(["poll.cursor.page_size: a page cursor needs the page size, "
                               "to know when a page is complete"])
        #: Whether the key carries the cursor value (``<id>@<updatedAt>``).
        self._versioned = bool(cursor and cursor.kind == "field" and cursor.from_ != settings.id)
        self._client: httpx.AsyncClient | None = None
        allowed = tuple(ctx.allowed_hosts)
        check_host(settings.url, allowed, "poll.url")
        if isinstance(settings.auth, OAuth2Outbound):
            check_host(settings.auth.token_url, allowed, "poll.auth.token_url")
        self.auth = build_outbound_auth(settings.auth, self._http, allowed)
        self._task: asyncio.Task[None] | None = None
        #: Keys accepted from a page whose cursor is not yet persisted.
        self._taken: set[str] = set()
        #: The cursor and the keys at it; read from ``ctx.state`` when the loop starts.
        self.state: dict[str, Any] = {"cursor": None, "seen": []}
        self._loaded = False

    # -- lifecycle ----------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.timeout)
        return self._client

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._loaded = False  # started (again) under a lease: the cursor may have moved
        self._task = asyncio.create_task(self._run(), name=f"esb-poll-{self.ctx.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                if not self._loaded:
                    await self.load()
                await self.poll_once()
            except PollFailed as exc:
                log.warning("poll failed; trying again next tick", source=self.ctx.name,
                            error=str(exc))
            except BusError as exc:
                log.warning("the bus did not take a polled item (or the cursor); the page is "
                            "polled again", source=self.ctx.name, error=str(exc))
            except ConfigError as exc:
                log.error("poll state unusable", source=self.ctx.name, error=str(exc))
            except Exception as exc:  # keep polling whatever went wrong
                log.error("poll failed unexpectedly", source=self.ctx.name,
                          error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.interval)

    # -- state --------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the cursor from the source's state (raises BusError/ConfigError)."""
        state = await self.ctx.state.load() or {}
        self.state = {"cursor": state.get("cursor"), "seen": list(state.get("seen") or [])}
        self._taken.clear()
        self._loaded = True

    async def _save(self, cursor: Any, seen: list[str]) -> None:
        await self.ctx.state.save({"cursor": cursor, "seen": seen})
        self.state = {"cursor": cursor, "seen": seen}
        self._taken.clear()

    # -- one tick -----------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Fetch pages until nothing new arrives (at most ``max_pages``); returns how many
        envelopes were accepted."""
        if not self._loaded:
            await self.load()
        total = 0
        for _ in range(self.settings.max_pages):
            accepted, more = await self._page()
            total += accepted
            if not more:
                break
        return total

    def _params(self) -> dict[str, str]:
        params = dict(self.settings.params)
        cursor = self.settings.cursor
        if cursor is not None:
            value = self.state["cursor"]
            if value is None:
                value = self._first_page() if cursor.kind == "page" else cursor.initial
            if value is not None:
                params[cursor.param] = (cursor.template.replace("{cursor}", str(value))
                                        if cursor.template else str(value))
        return params

    async def _fetch(self) -> list[Any]:
        s = self.settings
        where = redact_url(s.url)
        limit = s.max_body or max(self.ctx.max_body, 1024 * 1024)
        try:
            request = self._http().build_request("GET", s.url, params=self._params(),
                                                 headers=s.headers)
            response = await self._http().send(request, auth=self.auth, stream=True)
            try:
                content = await _read_capped(response, limit)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
            raise PollFailed(f"GET {where} {kind}: {type(exc).__name__}") from None
        except DeliveryError as exc:  # the OAuth 2.0 token endpoint failed
            raise PollFailed(scrub(str(exc), secrets_of(self.auth))) from None
        if not 200 <= response.status_code < 300:
            raise PollFailed(f"GET {where} answered HTTP {response.status_code}")
        if content is None:
            raise PollFailed(f"GET {where}: the answer is larger than max_body ({limit} bytes)")
        try:
            body = loads_json(content, self.ctx.json_depth)
        except JsonTooDeep as exc:
            raise PollFailed(f"GET {where}: {exc}") from None
        except orjson.JSONDecodeError:
            raise PollFailed(f"GET {where}: the answer is not JSON") from None
        items = self._items.search(body) if self._items is not None else body
        if items is None:
            return []
        if not isinstance(items, list):
            raise PollFailed(f"GET {where}: {s.items or 'the answer'} is not a list "
                             f"(got {type(items).__name__})")
        return items

    def _first_page(self) -> Any:
        initial = self.settings.cursor.initial if self.settings.cursor else None
        return initial if initial is not None else 1

    def _cursor_of(self, item: Any) -> Any:
        return self._from.search(item) if self._from is not None else None

    def _key(self, item: Any) -> tuple[str, str | None]:
        """The item's key and its id."""
        if self._id is None:
            digest = hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
            return digest.hexdigest()[:32], None
        item_id = scalar(self._id.search(item))
        if item_id is None:
            raise PollFailed(f"an item has no usable {self.settings.id!r} field")
        if self._versioned:
            version = scalar(self._cursor_of(item))
            if version is not None:
                return f"{item_id}@{version}", item_id
        return item_id, item_id

    async def _page(self) -> tuple[int, bool]:
        """One page: accept what is new, then advance and persist the cursor. Returns the
        number accepted and whether to fetch the next page right away."""
        items = await self._fetch()
        seen = set(self.state["seen"])
        keyed = [(item, *self._key(item)) for item in items]
        accepted = 0
        for item, key, item_id in keyed:
            if key in seen or key in self._taken:
                continue
            envelope = Envelope(id=key, idempotencykey=key, subject=item_id,
                                source=self.ctx.name, type=self.type,
                                datacontenttype="application/json", data=item)
            await self.ctx.accept(envelope)  # BusError ends the tick: the cursor stays
            self._taken.add(key)
            accepted += 1
        cursor = self.settings.cursor
        old = self.state["cursor"]
        if cursor is None:
            # No cursor: an item is new when it was not in the previous answer.
            await self._save(None, [k for _, k, _ in keyed])
            return accepted, False
        if cursor.kind == "page":
            page = old if old is not None else self._first_page()
            assert cursor.page_size is not None
            if len(items) >= cursor.page_size:
                await self._save(int(page) + 1, [])
                return accepted, True
            if accepted or old is None:
                await self._save(page, sorted(seen | {k for _, k, _ in keyed}))
            return accepted, False
        if not keyed:
            return 0, False
        new = self._cursor_of(items[-1])
        if new is None:
            raise PollFailed(f"the last item has no {cursor.from_!r} field to continue from")
        boundary = {k for item, k, _ in keyed if self._cursor_of(item) == new}
        if new == old:
            boundary |= seen
        if accepted or new != old:
            await self._save(new, sorted(boundary))
        return accepted, accepted > 0 and new != old


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The streamed answer's body, or None as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
